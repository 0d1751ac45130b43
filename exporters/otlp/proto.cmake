# OTLP protobuf messages (proto/, written from the OTLP specification), the
# C++ and gRPC code generated from them, and the encoder that fills them from
# the span/metric model. Included by exporters/otlp/CMakeLists.txt.
#
#   loupe_otlp_proto   generated messages + TraceService/MetricsService stubs
#   loupe_otlp         gains otlp_encoder.cc
#
# Generated files go to ${CMAKE_CURRENT_BINARY_DIR}/generated, mirroring the
# proto paths: #include "opentelemetry/proto/trace/v1/trace.pb.h".

find_package(Protobuf REQUIRED)
# Debian 12 ships gRPC's CMake package (gRPC::grpc++, gRPC::grpc_cpp_plugin);
# other systems may only have pkg-config files.
find_package(gRPC CONFIG QUIET)
if(TARGET gRPC::grpc++)
  set(LOUPE_GRPCXX_LIB gRPC::grpc++)
else()
  pkg_check_modules(LOUPE_GRPCXX REQUIRED IMPORTED_TARGET grpc++)
  set(LOUPE_GRPCXX_LIB PkgConfig::LOUPE_GRPCXX)
endif()
if(TARGET gRPC::grpc_cpp_plugin)
  set(LOUPE_GRPC_CPP_PLUGIN $<TARGET_FILE:gRPC::grpc_cpp_plugin>)
else()
  find_program(LOUPE_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
endif()

set(LOUPE_OTLP_PROTO_DIR ${CMAKE_CURRENT_SOURCE_DIR}/proto)
set(LOUPE_OTLP_GEN_DIR ${CMAKE_CURRENT_BINARY_DIR}/generated)

# Messages only; the collector files also get gRPC service stubs.
set(LOUPE_OTLP_MESSAGE_PROTOS
  opentelemetry/proto/common/v1/common.proto
  opentelemetry/proto/resource/v1/resource.proto
  opentelemetry/proto/trace/v1/trace.proto
  opentelemetry/proto/metrics/v1/metrics.proto
  opentelemetry/proto/logs/v1/logs.proto)
set(LOUPE_OTLP_SERVICE_PROTOS
  opentelemetry/proto/collector/trace/v1/trace_service.proto
  opentelemetry/proto/collector/metrics/v1/metrics_service.proto
  opentelemetry/proto/collector/logs/v1/logs_service.proto)

set(LOUPE_OTLP_GEN_SOURCES)
set(LOUPE_OTLP_ALL_PROTO_FILES)
foreach(proto ${LOUPE_OTLP_MESSAGE_PROTOS} ${LOUPE_OTLP_SERVICE_PROTOS})
  list(APPEND LOUPE_OTLP_ALL_PROTO_FILES ${LOUPE_OTLP_PROTO_DIR}/${proto})
endforeach()

foreach(proto ${LOUPE_OTLP_MESSAGE_PROTOS} ${LOUPE_OTLP_SERVICE_PROTOS})
  string(REGEX REPLACE "\\.proto$" "" stem ${proto})
  set(outputs ${LOUPE_OTLP_GEN_DIR}/${stem}.pb.cc ${LOUPE_OTLP_GEN_DIR}/${stem}.pb.h)
  set(grpc_args)
  if(proto IN_LIST LOUPE_OTLP_SERVICE_PROTOS)
    list(APPEND outputs
      ${LOUPE_OTLP_GEN_DIR}/${stem}.grpc.pb.cc ${LOUPE_OTLP_GEN_DIR}/${stem}.grpc.pb.h)
    set(grpc_args
      --grpc_out=${LOUPE_OTLP_GEN_DIR} --plugin=protoc-gen-grpc=${LOUPE_GRPC_CPP_PLUGIN})
  endif()
  add_custom_command(
    OUTPUT ${outputs}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${LOUPE_OTLP_GEN_DIR}
    COMMAND protobuf::protoc
      --proto_path=${LOUPE_OTLP_PROTO_DIR}
      --cpp_out=${LOUPE_OTLP_GEN_DIR}
      ${grpc_args}
      ${LOUPE_OTLP_PROTO_DIR}/${proto}
    # Imports change the generated code of their importers (descriptors,
    # default instances), so every file depends on all of them.
    DEPENDS ${LOUPE_OTLP_ALL_PROTO_FILES} protobuf::protoc
    COMMENT "protoc ${proto}"
    VERBATIM)
  foreach(out ${outputs})
    if(out MATCHES "\\.cc$")
      list(APPEND LOUPE_OTLP_GEN_SOURCES ${out})
    endif()
  endforeach()
endforeach()

add_library(loupe_otlp_proto STATIC ${LOUPE_OTLP_GEN_SOURCES})
# SYSTEM: the generated headers are included from code built with -Werror;
# warnings in protoc's output are not ours to fix.
target_include_directories(loupe_otlp_proto SYSTEM PUBLIC ${LOUPE_OTLP_GEN_DIR})
target_link_libraries(loupe_otlp_proto PUBLIC protobuf::libprotobuf ${LOUPE_GRPCXX_LIB})
# The generated sources themselves: keep the warnings visible but not fatal,
# for this target only.
target_compile_options(loupe_otlp_proto PRIVATE -Wno-error -Wno-unused-parameter)

target_sources(loupe_otlp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/otlp_encoder.cc)
# LOUPE_VERSION for the instrumentation scope comes from agent/version.h,
# generated at configure time under ${CMAKE_BINARY_DIR}/generated.
target_include_directories(loupe_otlp PRIVATE ${CMAKE_BINARY_DIR}/generated)
target_link_libraries(loupe_otlp PUBLIC loupe_otlp_proto absl::hash absl::flat_hash_map)
