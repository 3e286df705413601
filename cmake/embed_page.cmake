# embed_page.cmake: turns proxy/status_page.html into a C file (run as a build step with
#   cmake -DIN=page.html -DOUT=status_page.c -P embed_page.cmake).
# It writes the page as a byte array, and the Content-Security-Policy that lets exactly its one
# <style> and one <script> run, by their SHA-256 (CSP Level 2 hashes, base64), so the page
# needs neither 'unsafe-inline' nor a per-response nonce. The page must be ASCII: a hash is over
# the bytes, and CMake's string functions count bytes.

if(NOT IN OR NOT OUT)
  message(FATAL_ERROR "embed_page.cmake: set IN and OUT")
endif()

file(READ "${IN}" page)

# Base64 of the bytes spelled by a string of hex digits.
function(hex_to_base64 hex out)
  set(alphabet "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
  string(LENGTH "${hex}" n)
  set(res "")
  set(i 0)
  while(i LESS n)
    math(EXPR left "${n} - ${i}")
    if(left GREATER_EQUAL 6)
      string(SUBSTRING "${hex}" ${i} 6 chunk)
      set(chars 4)
    else()
      string(SUBSTRING "${hex}" ${i} ${left} chunk)
      math(EXPR chars "${left} / 2 + 1") # 1 byte -> 2 chars, 2 bytes -> 3 chars
      while(left LESS 6)
        string(APPEND chunk "00")
        math(EXPR left "${left} + 2")
      endwhile()
    endif()
    math(EXPR v "0x${chunk}")
    set(k 0)
    foreach(shift 18 12 6 0)
      if(k LESS chars)
        math(EXPR idx "(${v} >> ${shift}) & 63")
        string(SUBSTRING "${alphabet}" ${idx} 1 c)
        string(APPEND res "${c}")
      else()
        string(APPEND res "=")
      endif()
      math(EXPR k "${k} + 1")
    endforeach()
    math(EXPR i "${i} + 6")
  endwhile()
  set(${out} "${res}" PARENT_SCOPE)
endfunction()

# 'sha256-...' for the text between the only <tag> and its </tag>.
function(element_hash tag out)
  string(FIND "${page}" "<${tag}>" open)
  string(FIND "${page}" "<${tag}>" open_last REVERSE)
  string(FIND "${page}" "</${tag}>" close)
  if(open EQUAL -1 OR close EQUAL -1 OR NOT open EQUAL open_last OR close LESS open)
    message(FATAL_ERROR "${IN}: needs exactly one <${tag}> ... </${tag}> (no attributes)")
  endif()
  string(LENGTH "<${tag}>" taglen)
  math(EXPR start "${open} + ${taglen}")
  math(EXPR len "${close} - ${start}")
  string(SUBSTRING "${page}" ${start} ${len} body)
  string(SHA256 hex "${body}")
  hex_to_base64("${hex}" b64)
  set(${out} "'sha256-${b64}'" PARENT_SCOPE)
endfunction()

element_hash(script script_hash)
element_hash(style style_hash)

# connect-src 'self': the fetch of /status; nothing else may load, frame or be submitted.
set(csp "default-src 'none'; script-src ${script_hash}; style-src ${style_hash}; ")
string(APPEND csp "connect-src 'self'; base-uri 'none'; form-action 'none'; ")
string(APPEND csp "frame-ancestors 'none'")

file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR size "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# 16 bytes to a line (CMake's regex has no {16})
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 line)
string(REGEX REPLACE "(${line})" "\\1\n    " bytes "${bytes}")
string(STRIP "${bytes}" bytes)

file(WRITE "${OUT}"
"/* Generated from proxy/status_page.html by cmake/embed_page.cmake. Do not edit. */
#include \"admin_page.h\"

const unsigned char sp_status_page_html[] = {
    ${bytes}
};
const size_t sp_status_page_len = ${size};
const char sp_status_page_csp[] = \"${csp}\";
")
