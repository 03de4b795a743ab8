// Builds torch.save files byte by byte for the pytorch_model.bin tests (no PyTorch needed): a
// protocol-2 pickle of a state dict laid out as torch.save writes it (OrderedDict, one
// _rebuild_tensor_v2 call per tensor over a persistent storage id), and a ZIP archive of stored
// entries around it.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace m3::test {

// Little-endian integer of n bytes appended to s.
inline void put(std::string& s, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}

struct PickledTensor {
  std::string name, storage_type, key;  // storage_type e.g. "FloatStorage"
  int64_t storage_numel, offset;
  std::vector<int64_t> size, stride;
};

class PickleWriter {
 public:
  std::string bytes = std::string("\x80\x02", 2);
  void op(char c) { bytes.push_back(c); }
  void global(const std::string& module, const std::string& name) { bytes += "c" + module + "\n" + name + "\n"; }
  void str(const std::string& s) {
    op('X');
    put(bytes, s.size(), 4);
    bytes += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      put(bytes, uint64_t(v), 1);
    } else {
      op('J');
      put(bytes, uint64_t(v), 4);
    }
  }
  void tuple(const std::vector<int64_t>& v) {
    op('(');
    for (int64_t x : v) integer(x);
    op('t');
  }
};

// The pickle torch.save writes for an OrderedDict of tensors.
inline std::string state_dict_pickle(const std::vector<PickledTensor>& ts) {
  PickleWriter w;
  w.global("collections", "OrderedDict");
  w.op(')');
  w.op('R');
  w.op('(');
  for (const auto& t : ts) {
    w.str(t.name);
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.op('(');
    w.op('(');
    w.str("storage");
    w.global("torch", t.storage_type);
    w.str(t.key);
    w.str("cpu");
    w.integer(t.storage_numel);
    w.op('t');
    w.op('Q');
    w.integer(t.offset);
    w.tuple(t.size);
    w.tuple(t.stride);
    w.op('\x89');  // requires_grad False
    w.global("collections", "OrderedDict");
    w.op(')');
    w.op('R');
    w.op('t');
    w.op('R');
  }
  w.op('u');
  w.op('.');
  return w.bytes;
}

// A ZIP archive of stored entries (CRC left 0: the reader does not check it), each entry's data
// aligned to 64 bytes as torch.save aligns it.
inline std::string zip_archive(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string z, cd;
  for (const auto& [name, data] : entries) {
    const uint64_t local = z.size();
    const uint64_t pad = (64 - (local + 30 + name.size() + 4) % 64) % 64;
    put(z, 0x04034b50, 4), put(z, 20, 2), put(z, 0, 2), put(z, 0, 2), put(z, 0, 4), put(z, 0, 4);
    put(z, data.size(), 4), put(z, data.size(), 4), put(z, name.size(), 2), put(z, 4 + pad, 2);
    z += name;
    put(z, 0x1234, 2), put(z, pad, 2), z += std::string(pad, '\0');  // a padding extra field
    z += data;
    put(cd, 0x02014b50, 4), put(cd, 20, 2), put(cd, 20, 2), put(cd, 0, 2), put(cd, 0, 2), put(cd, 0, 4);
    put(cd, 0, 4), put(cd, data.size(), 4), put(cd, data.size(), 4), put(cd, name.size(), 2), put(cd, 0, 2);
    put(cd, 0, 2), put(cd, 0, 2), put(cd, 0, 2), put(cd, 0, 4), put(cd, local, 4);
    cd += name;
  }
  const uint64_t cd_off = z.size();
  z += cd;
  put(z, 0x06054b50, 4), put(z, 0, 2), put(z, 0, 2), put(z, entries.size(), 2), put(z, entries.size(), 2);
  put(z, cd.size(), 4), put(z, cd_off, 4), put(z, 0, 2);
  return z;
}

}  // namespace m3::test
