# OTLP transports (gRPC through libgrpc++'s generic stub, HTTP through
# libcurl), the batching span and log exporters and the periodic metric
# exporter.
# Included by exporters/otlp/CMakeLists.txt; adds to loupe_otlp.
if(NOT TARGET gRPC::grpc++)
  # Debian's libgrpc++-dev ships this config in /usr/lib/x86_64-linux-gnu/cmake/grpc.
  find_package(gRPC CONFIG REQUIRED)
endif()
find_package(CURL REQUIRED)
find_package(ZLIB REQUIRED)

target_sources(loupe_otlp PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/export_retry.cc
  ${CMAKE_CURRENT_LIST_DIR}/grpc_transport.cc
  ${CMAKE_CURRENT_LIST_DIR}/http_transport.cc
  ${CMAKE_CURRENT_LIST_DIR}/otlp_metric_exporter.cc
  ${CMAKE_CURRENT_LIST_DIR}/otlp_metrics_source.cc
  ${CMAKE_CURRENT_LIST_DIR}/otlp_batch_exporter.cc
  ${CMAKE_CURRENT_LIST_DIR}/otlp_transport.cc
  ${CMAKE_CURRENT_LIST_DIR}/rpc_status.cc
  ${CMAKE_CURRENT_LIST_DIR}/tls_files.cc
)
target_link_libraries(loupe_otlp PUBLIC
  gRPC::grpc++ CURL::libcurl ZLIB::ZLIB Threads::Threads
  absl::status absl::statusor absl::strings absl::str_format absl::synchronization absl::time)
