# CPU and memory sampling of processes and containers (see
# resource_usage_benchmark.cc).
add_executable(resource_usage_benchmark resource_usage_benchmark.cc)
target_include_directories(resource_usage_benchmark PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(resource_usage_benchmark PRIVATE loupe_agent benchmark::benchmark
                      Threads::Threads)
