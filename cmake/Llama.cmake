# Obtains and builds the pinned llama.cpp through cmake/llama.sh (cached in ~/.cache/kvstash, or
# $KVSTASH_CACHE), then imports it. Configure with -DKVSTASH_LLAMA_SRC=DIR to build a checkout of
# your own, or -DCMAKE_PREFIX_PATH=PREFIX to use an installed llama.cpp as is.
# Resolved anew at every configure: a build directory must not keep an install that a changed
# pin or patch (cmake/patches) has replaced (llama.sh returns at once when it is there).
unset(llama_DIR CACHE)
find_package(llama CONFIG QUIET NO_DEFAULT_PATH PATHS ${CMAKE_PREFIX_PATH})
if(NOT llama_FOUND)
  set(_args)
  if(KVSTASH_LLAMA_SRC)
    list(APPEND _args --src ${KVSTASH_LLAMA_SRC})
  endif()
  if(KVSTASH_CUDA)
    list(APPEND _args --cuda)
  endif()
  execute_process(
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cmake/llama.sh ${_args}
    OUTPUT_VARIABLE _out
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "kvstash: building llama.cpp failed (cmake/llama.sh exit ${_rc})")
  endif()
  string(STRIP "${_out}" _out)
  string(REGEX REPLACE ".*\n" "" LLAMA_PREFIX "${_out}")
  message(STATUS "kvstash: llama.cpp at ${LLAMA_PREFIX}")
  # Forget every llama.cpp/ggml path found in another install than this one (a new pin or patch,
  # or an install found through a prefix path earlier), or the build links stale libraries.
  get_cmake_property(_cached CACHE_VARIABLES)
  foreach(_v ${_cached})
    get_property(_type CACHE ${_v} PROPERTY TYPE)
    get_property(_value CACHE ${_v} PROPERTY VALUE)
    string(FIND "${_value}" "${LLAMA_PREFIX}" _at)
    if(_v MATCHES "^(GGML_|ggml_|llama_|KVSTASH_LLAMA_COMMON)" AND NOT _at EQUAL 0 AND
       (_type STREQUAL "FILEPATH" OR _type STREQUAL "PATH"))
      unset(${_v} CACHE)
    endif()
  endforeach()
  find_package(llama CONFIG REQUIRED NO_DEFAULT_PATH PATHS ${LLAMA_PREFIX})
  set(KVSTASH_VOCAB_DIR ${LLAMA_PREFIX}/share/kvstash/vocab)
else()
  get_filename_component(LLAMA_PREFIX ${llama_DIR}/../../.. ABSOLUTE)
  set(KVSTASH_VOCAB_DIR ${LLAMA_PREFIX}/share/kvstash/vocab)
endif()
get_filename_component(KVSTASH_VOCAB_DIR ${KVSTASH_VOCAB_DIR} ABSOLUTE)
get_filename_component(KVSTASH_TEMPLATE_DIR ${KVSTASH_VOCAB_DIR}/../templates ABSOLUTE)

# llama.cpp's common library (chat templates with tools, tool-call and reasoning parsing,
# grammars, JSON schema to grammar), installed with its headers by cmake/llama.sh.
find_library(KVSTASH_LLAMA_COMMON llama-common NO_DEFAULT_PATH PATHS ${LLAMA_PREFIX}/lib ${LLAMA_PREFIX}/lib64)
find_library(KVSTASH_LLAMA_COMMON_BASE llama-common-base NO_DEFAULT_PATH
  PATHS ${LLAMA_PREFIX}/lib ${LLAMA_PREFIX}/lib64)
if(NOT KVSTASH_LLAMA_COMMON OR NOT KVSTASH_LLAMA_COMMON_BASE OR
   NOT EXISTS ${LLAMA_PREFIX}/include/llama-common/chat.h)
  message(FATAL_ERROR "kvstash: ${LLAMA_PREFIX} lacks llama.cpp's common library and headers "
    "(include/llama-common); install llama.cpp with cmake/llama.sh")
endif()
add_library(kvstash_llama_common INTERFACE)
target_include_directories(kvstash_llama_common SYSTEM INTERFACE ${LLAMA_PREFIX}/include/llama-common)
target_link_libraries(kvstash_llama_common INTERFACE ${KVSTASH_LLAMA_COMMON}
  ${KVSTASH_LLAMA_COMMON_BASE} llama)
# Where `kvstash mkmodel --vocab NAME` finds ggml-vocab-NAME.gguf by default.
add_compile_definitions(KVSTASH_VOCAB_DIR="${KVSTASH_VOCAB_DIR}")
# Where `kvstash mkmodel` finds the chat templates it embeds (llama.cpp's models/templates).
add_compile_definitions(KVSTASH_TEMPLATE_DIR="${KVSTASH_TEMPLATE_DIR}")
add_compile_definitions(KVSTASH_LLAMA_COMMIT="${LLAMA_BUILD_COMMIT}")
# What else of the llama.cpp build the model fingerprint names (engine/fingerprint.h): kvstash's
# patch series, which defines the state layout, hashed as cmake/llama.sh names its install
# (p + 8 hex digits of the SHA-256 of the patches in name order), and the backends compiled in.
file(GLOB _kvstash_patches ${CMAKE_CURRENT_SOURCE_DIR}/cmake/patches/*.patch)
list(SORT _kvstash_patches)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_kvstash_patches})
set(_series "")
foreach(_p ${_kvstash_patches})
  file(READ ${_p} _text)
  string(APPEND _series "${_text}")
endforeach()
string(SHA256 _sha "${_series}")
string(SUBSTRING "${_sha}" 0 8 _sha)
set(_backends "")
foreach(_b ${GGML_AVAILABLE_BACKENDS})
  string(REGEX REPLACE "^ggml-" "" _b "${_b}")
  list(APPEND _backends ${_b})
endforeach()
list(SORT _backends)
list(JOIN _backends "+" _backends)
if(NOT _backends)
  set(_backends unknown)
endif()
add_compile_definitions(KVSTASH_LLAMA_PATCHES="p${_sha}" KVSTASH_LLAMA_BACKEND="${_backends}")
