# Trace context linking on overlapping request chains, against the span
# assembler alone (see linker_benchmark.cc).
add_executable(linker_benchmark linker_benchmark.cc)
target_include_directories(linker_benchmark PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(linker_benchmark PRIVATE loupe_decoders benchmark::benchmark)
