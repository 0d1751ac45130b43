# Header capture and redaction end to end: curl and nginx (HTTP/1.1, a
# forward-proxy request, cleartext HTTP/2 from nginx_redaction.conf.in) with
# per-run secrets in credential headers and the URL query; every output of
# the agent is searched for them. See redaction_test.cc.
loupe_add_test(redaction_integration_test
  SOURCES redaction_test.cc
  LIBS loupe_test_support
  LABELS integration
  WHOLE)
add_dependencies(redaction_integration_test loupe)
