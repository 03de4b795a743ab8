// The m3 command-line tool run as a subprocess by the CLI tests: exit status, stdout and stderr.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "temp_dir.h"

namespace m3::test {

struct Result {
  int code;  // the exit status, or 128 + the signal that killed it
  std::string out, err;
};

inline std::string quote(const std::string& s) { return "'" + s + "'"; }

// The folder holding m3: $M3_BINARY_DIR when set (scripts/gpu.sh runs prebuilt binaries away
// from the build tree), else the build's own.
inline std::string m3_binary_dir() {
  const char* env = std::getenv("M3_BINARY_DIR");
  return env && *env ? env : M3_BINARY_DIR;
}

// Runs `m3 ARGS` (ARGS already quoted for the shell) with stdout and stderr captured separately.
inline Result run_m3(const std::string& args, const TempDir& tmp) {
  const std::string err_file = tmp.file("stderr.txt");
  const std::string cmd = quote(m3_binary_dir() + "/m3") + " " + args + " 2>" + quote(err_file);
  Result r{-1, "", ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

}  // namespace m3::test
