#include "m3/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/limits.h"
#include "io/files.h"
#include "io/torch_checkpoint.h"
#include "m3/error.h"

namespace m3 {

namespace {

// Bound on a shape's element count: its byte size (≤ 8 bytes an element) fits in int64.
constexpr uint64_t kMaxElements = uint64_t(std::numeric_limits<int64_t>::max()) / 8;

std::string errno_str() { return std::strerror(errno); }

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  auto fail = [&](const std::string& msg) -> Error { return Error(path + ": " + msg); };

  const MappedFile mf = map_file(path);
  const uint64_t size = mf.size;
  if (size < 8) throw fail("truncated: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  f.map_ = mf.owner;
  const void* p = mf.data;
  const char* base = static_cast<const char*>(p);

  uint64_t hlen = 0;
  std::memcpy(&hlen, base, 8);  // little-endian on every platform we build for
  // Real headers are kilobytes to a few megabytes.
  if (hlen > limits::kSafetensorsHeaderBytes)
    throw fail("header length " + std::to_string(hlen) + " exceeds the limit of " +
               std::to_string(limits::kSafetensorsHeaderBytes) + " bytes (kSafetensorsHeaderBytes, src/core/limits.h)");
  if (hlen > size - 8)
    throw fail("header length " + std::to_string(hlen) + " runs past the end of the file (" +
               std::to_string(size) + " bytes)");
  // JSON parsers keep one of two equal keys silently (which one is not portable), so the parse
  // records the first key repeated within one object and the file is refused.
  std::vector<std::set<std::string>> keys;  // the keys seen so far in each object being parsed
  std::string duplicate;
  auto find_duplicate = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) keys.emplace_back();
    if (ev == E::object_end) keys.pop_back();
    if (ev == E::key && !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  check_json_depth(std::string_view(base + 8, hlen), path + ": header");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + hlen, find_duplicate);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("malformed JSON header: ") + e.what());
  }
  if (!duplicate.empty()) throw fail("header holds the key '" + duplicate + "' twice");
  if (!header.is_object()) throw fail("header is not a JSON object");
  if (int64_t(header.size()) > limits::kSafetensorsTensors + 1)  // + __metadata__
    throw fail("header lists " + std::to_string(header.size()) + " entries, more than the limit of " +
               std::to_string(limits::kSafetensorsTensors) + " tensors (kSafetensorsTensors, src/core/limits.h)");

  f.data_ = base + 8 + hlen;
  const uint64_t data_size = size - 8 - hlen;
  struct Span { uint64_t begin, end; std::string name; };
  std::vector<Span> spans;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw fail("__metadata__ value of '" + m.key() + "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto tfail = [&](const std::string& msg) { return fail("tensor '" + name + "': " + msg); };
    if (!v.is_object()) throw tfail("entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw tfail("missing or non-string dtype");
    auto dt = dtype_from_name(v["dtype"].get<std::string>());
    if (!dt) throw tfail("unsupported dtype '" + v["dtype"].get<std::string>() + "'");
    if (!v.contains("shape") || !v["shape"].is_array()) throw tfail("missing or non-array shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      throw tfail("data_offsets must be an array of two integers");
    Tensor t;
    t.dtype = *dt;
    // The product of the non-zero dims is bounded too, so that no later product of dims overflows
    // (a zero dim would otherwise hide a huge one).
    uint64_t numel = 1, nonzero_numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw tfail("shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && nonzero_numel > kMaxElements / dim) throw tfail("shape overflows: more than 2^60 elements");
      numel *= dim;
      nonzero_numel *= std::max<uint64_t>(dim, 1);
      t.shape.push_back(int64_t(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw tfail("data_offsets must be non-negative integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e) throw tfail("data_offsets begin " + std::to_string(b) + " > end " + std::to_string(e));
    if (e > data_size)
      throw tfail("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                  ") lie outside the data section of " + std::to_string(data_size) + " bytes");
    if (numel * dtype_size(t.dtype) != e - b)
      throw tfail("shape " + shape_str(t.shape) + " x " + dtype_name(t.dtype) + " is " +
                  std::to_string(numel * dtype_size(t.dtype)) + " bytes but its span is " + std::to_string(e - b));
    t.data = const_cast<char*>(f.data_ + b);
    t.owner = f.map_;
    spans.push_back({b, e, name});
    f.names_.push_back(name);
    f.index_.emplace(name, std::move(t));
  }
  // Sorted by start, some two non-empty spans overlap iff some two neighbours do.
  std::erase_if(spans, [](const Span& sp) { return sp.begin == sp.end; });
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      throw fail("tensors '" + spans[i - 1].name + "' and '" + spans[i].name + "' overlap");
  return f;
}

Tensor SafetensorsFile::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error(path_ + ": no tensor named '" + name + "'");
  return it->second;
}

namespace {

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Writes chunks to a temporary sibling of `path`, fsyncs, renames over `path`, fsyncs the directory.
template <class WriteBody>
void write_atomic(const std::string& path, WriteBody&& body) {
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(getpid()))).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot create temporary file " + tmp + ": " + errno_str());
  auto write_all = [&](const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        std::string e = errno_str();
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error(path + ": write failed: " + e);
      }
      c += w;
      n -= size_t(w);
    }
  };
  body(write_all);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw Error(path + ": fsync/close failed: " + errno_str());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string e = errno_str();
    ::unlink(tmp.c_str());
    throw Error(path + ": rename failed: " + e);
  }
  fsync_path(dir.string(), true);
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    check(name != "__metadata__", path + ": '__metadata__' is not a valid tensor name");
    check(!header.contains(name), path + ": duplicate tensor name '" + name + "'");
    header[name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string h;
  try {
    h = header.dump();
  } catch (const nlohmann::json::exception& e) {  // a name that is not valid UTF-8
    throw Error(path + ": cannot write the header: " + e.what());
  }
  h.append((8 - h.size() % 8) % 8, ' ');  // pad so the data section starts 8-byte aligned
  uint64_t hlen = h.size();
  write_atomic(path, [&](auto&& write_all) {
    write_all(&hlen, 8);
    write_all(h.data(), h.size());
    for (const auto& nt : tensors) write_all(nt.second.data, nt.second.nbytes());
  });
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_atomic(path, [&](auto&& write_all) { write_all(text.data(), text.size()); });
}

namespace {

// The shard files an index names (weight_map values), each once, in order of first mention.
std::vector<std::string> shards(const std::filesystem::path& dir, const std::filesystem::path& index) {
  const nlohmann::json j = read_json_file(index.string());
  check(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
        index.string() + ": missing object 'weight_map'");
  std::vector<std::string> files;
  for (auto& [name, file] : j["weight_map"].items()) {
    check(file.is_string(), index.string() + ": weight_map['" + name + "'] is not a string");
    std::string f = file.get<std::string>();
    check(f.find('/') == std::string::npos && f.find("..") == std::string::npos,
          index.string() + ": shard name '" + f + "' must be a plain file name");
    if (std::find(files.begin(), files.end(), (dir / f).string()) == files.end()) files.push_back((dir / f).string());
  }
  return files;
}

}  // namespace

CheckpointTensors CheckpointTensors::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  CheckpointTensors c;
  const fs::path d(dir);
  std::vector<std::string> files;
  bool torch = false;
  std::error_code ec;  // an unreadable directory reads as "no such file", reported below
  if (fs::exists(d / "model.safetensors", ec)) {
    files.push_back((d / "model.safetensors").string());
  } else if (fs::exists(d / "model.safetensors.index.json", ec)) {
    files = shards(d, d / "model.safetensors.index.json");
  } else if (fs::exists(d / "pytorch_model.bin", ec)) {
    files.push_back((d / "pytorch_model.bin").string()), torch = true;
  } else if (fs::exists(d / "pytorch_model.bin.index.json", ec)) {
    files = shards(d, d / "pytorch_model.bin.index.json"), torch = true;
  } else {
    throw Error(dir + ": no model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
                      "pytorch_model.bin.index.json");
  }
  for (const auto& f : files) {
    File file{f, {}};
    if (torch) {
      for (auto& [n, t] : read_torch_checkpoint(f)) file.tensors.emplace(n, t);
    } else {
      const SafetensorsFile st = SafetensorsFile::open(f);
      for (const auto& n : st.names()) file.tensors.emplace(n, st.get(n));
    }
    c.files_.push_back(std::move(file));
    for (const auto& [n, t] : c.files_.back().tensors) {
      auto [it, fresh] = c.where_.emplace(n, c.files_.size() - 1);
      if (!fresh) throw Error(f + ": tensor '" + n + "' also appears in " + c.files_[it->second].path);
    }
  }
  return c;
}

bool CheckpointTensors::has(const std::string& name) const { return where_.count(name) != 0; }

Tensor CheckpointTensors::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    std::string files;
    for (const auto& f : files_) files += (files.empty() ? "" : ", ") + f.path;
    throw Error(files + ": missing tensor '" + name + "'");
  }
  return files_[it->second].tensors.at(name);
}

const std::string& CheckpointTensors::file_of(const std::string& name) const {
  auto it = where_.find(name);
  check(it != where_.end(), "missing tensor '" + name + "'");
  return files_[it->second].path;
}

std::vector<std::string> CheckpointTensors::names() const {
  std::vector<std::string> r;
  for (const auto& [n, i] : where_) r.push_back(n);
  return r;
}

}  // namespace m3
