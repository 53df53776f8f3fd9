# Turns a text file into a C++ header holding it as a string constant, so the binary serves it
# without any file beside it (the status page). Run as a build step:
#   cmake -DIN=FILE -DOUT=HEADER -DNAME=IDENTIFIER -P embed_text.cmake
# A raw string literal keeps the text as it is; its delimiter must not occur in the text, which
# is checked here rather than left to a confusing compiler error.
file(READ "${IN}" text)
set(delim "kvstash_embed")
string(FIND "${text}" ")${delim}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw string delimiter )${delim}\"")
endif()
file(WRITE "${OUT}.tmp"
  "// Generated from ${IN} by cmake/embed_text.cmake; edit that file instead.\n"
  "#pragma once\n\n"
  "inline constexpr const char ${NAME}[] = R\"${delim}(${text})${delim}\";\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
