# `cmake --install`: libkvarn.so.0 with its headers, a CMake package (find_package(kvarn),
# target kvarn::kvarn), a pkg-config file (kvarn.pc) and the kvarn CLI. Both package files are
# relocatable: they find the prefix from their own location, so --prefix at install time works.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS kvarn EXPORT kvarnTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/kvarn/kvarn.h ${PROJECT_SOURCE_DIR}/include/kvarn/kvarn.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/kvarn)
install(TARGETS kvarn_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/kvarn)
install(EXPORT kvarnTargets NAMESPACE kvarn:: DESTINATION ${cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/kvarnConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/kvarnConfig.cmake INSTALL_DESTINATION ${cmake_dir})
# Soname 0 for every 0.x release: same-major compatibility.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/kvarnConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/kvarnConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/kvarnConfigVersion.cmake DESTINATION ${cmake_dir})

file(RELATIVE_PATH KVARN_PC_PREFIX_FROM_PCDIR "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" KVARN_PC_PREFIX_FROM_PCDIR "${KVARN_PC_PREFIX_FROM_PCDIR}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/kvarn.pc.in ${CMAKE_CURRENT_BINARY_DIR}/kvarn.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/kvarn.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
