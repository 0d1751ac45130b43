# OOM kills for real: a memory cgroup limited to 32 MiB (v1, and v2 where the
# memory controller is available to it), a victim that grows until the kernel
# kills it (oom_victim.cc), the agent's BPF capture loaded in the test process
# and OomReporter reading the cgroup files. Root only. See oom_test.cc.
add_executable(oom_victim oom_victim.cc)

loupe_add_test(oom_integration_test
  SOURCES oom_test.cc
  LIBS loupe_test_support loupe_agent
  LABELS integration
  WHOLE)
target_compile_definitions(oom_integration_test PRIVATE
  LOUPE_OOM_VICTIM="$<TARGET_FILE:oom_victim>")
add_dependencies(oom_integration_test oom_victim)
