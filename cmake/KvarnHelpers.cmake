# Shared compile settings for every kvarn target.
add_library(kvarn_options INTERFACE)
target_compile_options(kvarn_options INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
  $<$<BOOL:${KVARN_WERROR}>:-Werror>
  # GCC 12 reports false -Wrestrict positives inside std::string concatenation at -O3
  # (GCC bug 105329); the warning stays on for every other compiler.
  $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
target_include_directories(kvarn_options INTERFACE
  ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
if(KVARN_SANITIZE)
  target_compile_options(kvarn_options INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(kvarn_options INTERFACE -fsanitize=address,undefined)
  # Tests that run whole real models use a smaller workload under the sanitizers (same code
  # paths, fewer prompts and steps) so the CI suite stays well inside its time.
  target_compile_definitions(kvarn_options INTERFACE KVARN_SANITIZER_BUILD=1)
endif()
if(KVARN_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "KVARN_FUZZ needs clang (libFuzzer); configure with the fuzz preset")
  endif()
  # Coverage instrumentation for libFuzzer in every library; the fuzz targets add
  # -fsanitize=fuzzer (libFuzzer's main) themselves. Recovering from a UBSan report would let
  # the fuzzer miss it, hence no recovery.
  target_compile_options(kvarn_options INTERFACE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer -g)
  target_link_options(kvarn_options INTERFACE -fsanitize=address,undefined)
  # Tests that run whole real models use a smaller workload under the sanitizers (same code
  # paths, fewer prompts and steps) so the CI suite stays well inside its time.
  target_compile_definitions(kvarn_options INTERFACE KVARN_SANITIZER_BUILD=1)
endif()

# kvarn_layer(NAME DIR DEPS...): a static library from every .cc in DIR.
# Globbing keeps each layer's file list in one place (its folder).
function(kvarn_layer name dir)
  file(GLOB srcs CONFIGURE_DEPENDS ${dir}/*.cc)
  add_library(${name} STATIC ${srcs})
  target_link_libraries(${name} PUBLIC kvarn_options ${ARGN})
endfunction()

# kvarn_test_suite(NAME DIR DEPS...): one GoogleTest binary from DIR/*_test.cc.
# HWY_IS_TEST makes Highway compile and test every target, not only the best one.
function(kvarn_test_suite name dir)
  file(GLOB srcs CONFIGURE_DEPENDS ${dir}/*_test.cc)
  if(NOT srcs)
    return()
  endif()
  add_executable(${name} ${srcs})
  target_compile_definitions(${name} PRIVATE HWY_IS_TEST=1
    KVARN_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  target_link_libraries(${name} PRIVATE kvarn_options GTest::gtest_main ${ARGN})
  # Real-model tests run several times slower under the sanitizers.
  if(KVARN_SANITIZE)
    set(timeout 1800)
  else()
    set(timeout 600)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT ${timeout})
endfunction()
