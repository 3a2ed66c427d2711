# sl_add_module(name SOURCES ... DEPS ...): one static library per runtime folder.
function(sl_add_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${M_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/runtime
                                            ${PROJECT_SOURCE_DIR}/runtime/include)
  target_link_libraries(${name} PUBLIC ${M_DEPS})
endfunction()

# sl_add_test(name SOURCES ... DEPS ... [TIMEOUT s]): a unit test binary registered with CTest.
function(sl_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;DEPS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/support)
  target_link_libraries(${name} PRIVATE ${T_DEPS})
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT})
endfunction()

# sl_add_fuzz(name SOURCES ... DEPS ...): a libFuzzer target, built only with SL_FUZZ (clang).
# The libraries it links carry coverage too: SL_FUZZ compiles everything with fuzzer-no-link.
function(sl_add_fuzz name)
  cmake_parse_arguments(F "" "" "SOURCES;DEPS" ${ARGN})
  if(NOT SL_FUZZ)
    return()
  endif()
  add_executable(${name} ${F_SOURCES})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE ${F_DEPS})
endfunction()

# sl_add_plugin(name SOURCES ... [DIR plugins|connectors|tests]): a plugin .so ("name.so") that
# sees only the public headers, as an out-of-tree plugin would, built into <build>/<DIR>/.
function(sl_add_plugin name)
  cmake_parse_arguments(P "" "DIR" "SOURCES;DEPS" ${ARGN})
  if(NOT P_DIR)
    set(P_DIR plugins)
  endif()
  add_library(${name} MODULE ${P_SOURCES})
  set_target_properties(${name} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden
                        LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/${P_DIR})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/runtime/include)
  target_link_libraries(${name} PRIVATE ${P_DEPS})
  if(NOT P_DIR STREQUAL "tests/plugins")
    install(TARGETS ${name} LIBRARY DESTINATION lib/sluice/plugins)
  endif()
endfunction()
