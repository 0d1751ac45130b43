# Trace context across processes: the real agent as root watching
# curl -> nginx (reverse proxy, nginx_proxy.conf.in) -> trace_service backend
# -> (PostgreSQL 15 from Debian, trace_service leaf), wrk through the same
# chain, and trace_service's event loop. See trace_context_test.cc and
# tests/trace_services/.
loupe_add_test(trace_context_integration_test
  SOURCES trace_context_test.cc
  LIBS loupe_test_support
  LABELS integration
  WHOLE)
target_compile_definitions(trace_context_integration_test PRIVATE
  LOUPE_TRACE_SERVICE="$<TARGET_FILE:trace_service>")
add_dependencies(trace_context_integration_test loupe trace_service)
