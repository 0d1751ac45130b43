# Least privilege: the real agent as root under setpriv with the capability
# set of packaging/systemd/loupe.service and with one capability removed at a
# time, against nginx and curl. See privileges_test.cc.
loupe_add_test(privileges_integration_test
  SOURCES privileges_test.cc ${PROJECT_SOURCE_DIR}/tests/packaging/unit_file.cc
  LIBS loupe_test_support loupe_agent
  LABELS integration
  WHOLE)
add_dependencies(privileges_integration_test loupe)
