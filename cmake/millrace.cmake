# Helpers shared by every room: one place sets warnings and sanitizers on our own targets.

set(MILLRACE_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Werror)

# Applies the project's warnings (as errors) and, when asked, the sanitizers.
function(millrace_target_defaults target)
  target_compile_options(${target} PRIVATE ${MILLRACE_WARNINGS})
  if(MILLRACE_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                             -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()

# millrace_add_test(NAME name SOURCES a.cpp ... [LIBS lib ...] [LABELS label ...] [TIMEOUT s])
# Builds one GoogleTest executable and registers its tests with ctest under the given labels.
function(millrace_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  millrace_target_defaults(${T_NAME})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main Threads::Threads)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  gtest_discover_tests(${T_NAME}
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()

# millrace_add_compile_fail_test(NAME name SOURCE file.cpp EXPECT "message regex")
# Registers a ctest that tries to compile SOURCE and passes only if compilation fails with a
# diagnostic matching EXPECT: proof that a forbidden use is rejected at compile time.
function(millrace_add_compile_fail_test)
  cmake_parse_arguments(T "" "NAME;SOURCE;EXPECT" "" ${ARGN})
  add_library(${T_NAME} OBJECT EXCLUDE_FROM_ALL ${T_SOURCE})
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${T_NAME} PRIVATE cereal::cereal)
  add_test(NAME ${T_NAME}
    COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target ${T_NAME})
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS "unit;compile_fail"
    WILL_FAIL OFF
    PASS_REGULAR_EXPRESSION "${T_EXPECT}"
    TIMEOUT 120)
endfunction()
