#include "io/torch_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include "io/files.h"
#include "m3/error.h"

namespace m3 {

namespace {

// Little-endian reads at byte offsets already checked to lie inside the buffer.
uint64_t le(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

}  // namespace

std::map<std::string, ZipEntry> read_zip_directory(const char* data, uint64_t size, const std::string& where) {
  auto fail = [&](const std::string& m) { return Error(where + ": " + m); };
  auto need = [&](uint64_t off, uint64_t n, const char* what) {
    if (off > size || n > size - off) throw fail(std::string(what) + " runs past the end of the archive (truncated?)");
  };
  // The end-of-central-directory record: the last signature within the 22 + 65535 trailing bytes.
  if (size < 22) throw fail("not a ZIP archive (" + std::to_string(size) + " bytes)");
  uint64_t eocd = size - 22;
  const uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  while (le(data + eocd, 4) != 0x06054b50) {
    if (eocd == lowest) throw fail("not a ZIP archive: no end-of-central-directory record (truncated?)");
    --eocd;
  }
  uint64_t entries = le(data + eocd + 10, 2), cd_size = le(data + eocd + 12, 4), cd_off = le(data + eocd + 16, 4);
  if (entries == 0xffff || cd_size == 0xffffffff || cd_off == 0xffffffff) {
    // ZIP64: the locator just before the record points at the ZIP64 end record.
    if (eocd < 20 || le(data + eocd - 20, 4) != 0x07064b50) throw fail("ZIP64 locator missing");
    const uint64_t z = le(data + eocd - 20 + 8, 8);
    need(z, 56, "the ZIP64 end record");
    if (le(data + z, 4) != 0x06064b50) throw fail("bad ZIP64 end record signature");
    entries = le(data + z + 32, 8), cd_size = le(data + z + 40, 8), cd_off = le(data + z + 48, 8);
  }
  need(cd_off, cd_size, "the central directory");
  std::map<std::string, ZipEntry> r;
  uint64_t p = cd_off;
  for (uint64_t i = 0; i < entries; ++i) {
    need(p, 46, "a central directory entry");
    if (le(data + p, 4) != 0x02014b50) throw fail("bad central directory entry signature");
    const uint64_t method = le(data + p + 10, 2), name_len = le(data + p + 28, 2), extra_len = le(data + p + 30, 2),
                   comment_len = le(data + p + 32, 2);
    uint64_t csize = le(data + p + 20, 4), usize = le(data + p + 24, 4), local = le(data + p + 42, 4);
    need(p + 46, name_len + extra_len + comment_len, "a central directory entry");
    const std::string name(data + p + 46, name_len);
    // ZIP64 extra field: the 8-byte values of the fields saturated above, in this order.
    for (uint64_t e = p + 46 + name_len; e + 4 <= p + 46 + name_len + extra_len;) {
      const uint64_t id = le(data + e, 2), len = le(data + e + 2, 2);
      if (e + 4 + len > p + 46 + name_len + extra_len) throw fail("entry '" + name + "': bad extra field");
      if (id == 1) {
        uint64_t q = e + 4;
        for (uint64_t* v : {&usize, &csize, &local})
          if (*v == 0xffffffff) {
            if (q + 8 > e + 4 + len) throw fail("entry '" + name + "': short ZIP64 extra field");
            *v = le(data + q, 8), q += 8;
          }
      }
      e += 4 + len;
    }
    if (method != 0 || csize != usize)
      throw fail("entry '" + name + "' is compressed (method " + std::to_string(method) +
                 "); torch.save writes stored entries only");
    need(local, 30, "a local header");
    if (le(data + local, 4) != 0x04034b50) throw fail("entry '" + name + "': bad local header signature");
    const uint64_t start = local + 30 + le(data + local + 26, 2) + le(data + local + 28, 2);
    need(start, csize, ("entry '" + name + "'").c_str());
    if (!r.emplace(name, ZipEntry{start, csize}).second) throw fail("entry '" + name + "' appears twice");
    p += 46 + name_len + extra_len + comment_len;
  }
  return r;
}

namespace {

// The values a state-dict pickle builds.
struct Value;
using Ref = std::shared_ptr<Value>;
struct Value {
  enum Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, TensorV } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s;            // String; Global "module.name"
  std::vector<Ref> items;   // Tuple, List; Dict as key, value, key, value...
  Tensor tensor;            // Storage (1-D), TensorV
};

Ref make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

const std::map<std::string, DType> kStorages = {
    {"torch.FloatStorage", DType::F32}, {"torch.DoubleStorage", DType::F64}, {"torch.HalfStorage", DType::F16},
    {"torch.BFloat16Storage", DType::BF16}, {"torch.LongStorage", DType::I64}, {"torch.IntStorage", DType::I32},
    {"torch.ByteStorage", DType::U8}};
const std::set<std::string> kCallables = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                          "torch._utils._rebuild_parameter"};

class Unpickler {
 public:
  Unpickler(std::string_view b, const StorageLoader& load, const std::string& where)
      : b_(b), load_(load), where_(where) {}

  Ref run() {
    while (true) {
      const size_t at = pos_;
      const uint8_t op = uint8_t(byte());
      switch (op) {
        case 0x80: byte(); break;          // PROTO
        case 0x95: bytes(8); break;        // FRAME
        case '.':                          // STOP
          check(stack_.size() == 1, at_(at) + "STOP with " + std::to_string(stack_.size()) + " values on the stack");
          return stack_.back();
        case '(': marks_.push_back(stack_.size()); break;
        case '}': push(make(Value::Dict)); break;
        case ']': push(make(Value::List)); break;
        case ')': push(make(Value::Tuple)); break;
        case 't': push(tuple(pop_mark(at))); break;
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          std::vector<Ref> v(op - 0x84);
          for (size_t k = v.size(); k-- > 0;) v[k] = pop(at);
          push(tuple(std::move(v)));
          break;
        }
        case 'a': {  // APPEND
          Ref x = pop(at);
          list_at(at)->items.push_back(x);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Ref> v = pop_mark(at);
          Ref l = list_at(at);
          l->items.insert(l->items.end(), v.begin(), v.end());
          break;
        }
        case 's': {  // SETITEM
          Ref v = pop(at), k = pop(at);
          dict_at(at)->items.insert(dict_at(at)->items.end(), {k, v});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Ref> v = pop_mark(at);
          check(v.size() % 2 == 0, at_(at) + "SETITEMS with an odd number of values");
          Ref d = dict_at(at);
          d->items.insert(d->items.end(), v.begin(), v.end());
          break;
        }
        case 'X': push(string(bytes(size_t(le(bytes(4).data(), 4))))); break;  // BINUNICODE
        case 0x8c: push(string(bytes(uint8_t(byte())))); break;                 // SHORT_BINUNICODE
        case 'J': push(integer(int32_t(uint32_t(le(bytes(4).data(), 4))))); break;
        case 'K': push(integer(uint8_t(byte()))); break;
        case 'M': push(integer(int64_t(le(bytes(2).data(), 2)))); break;
        case 0x8a: {  // LONG1: n bytes, little-endian two's complement
          const size_t n = uint8_t(byte());
          check(n <= 8, at_(at) + "LONG1 of " + std::to_string(n) + " bytes exceeds 64 bits");
          const std::string_view d = bytes(n);
          uint64_t v = n ? le(d.data(), int(n)) : 0;
          if (n && n < 8 && (uint8_t(d[n - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * n);
          push(integer(int64_t(v)));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          const std::string_view d = bytes(8);
          uint64_t v = 0;
          for (char ch : d) v = (v << 8) | uint8_t(ch);
          Ref r = make(Value::Float);
          std::memcpy(&r->f, &v, 8);
          push(r);
          break;
        }
        case 'N': push(make(Value::None)); break;
        case 0x88: case 0x89: {
          Ref r = make(Value::Bool);
          r->i = op == 0x88;
          push(r);
          break;
        }
        case 'q': memo(uint8_t(byte()), at); break;                   // BINPUT
        case 'r': memo(le(bytes(4).data(), 4), at); break;             // LONG_BINPUT
        case 0x94: memo(memo_.size(), at); break;                      // MEMOIZE
        case 'h': push(recall(uint8_t(byte()), at)); break;            // BINGET
        case 'j': push(recall(le(bytes(4).data(), 4), at)); break;     // LONG_BINGET
        case 'c': {                                                    // GLOBAL module\nname\n
          const std::string module = line(at), name = line(at);
          push(global(module + "." + name, at));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Ref name = pop(at), module = pop(at);
          check(name->kind == Value::String && module->kind == Value::String, at_(at) + "STACK_GLOBAL needs two strings");
          push(global(module->s + "." + name->s, at));
          break;
        }
        case 'Q': push(persistent(pop(at), at)); break;  // BINPERSID
        case 'R': {                                      // REDUCE
          Ref args = pop(at), fn = pop(at);
          push(reduce(fn, args, at));
          break;
        }
        case 'b': {  // BUILD: only an OrderedDict's attributes (state_dict's _metadata), dropped
          Ref state = pop(at);
          check(!stack_.empty() && stack_.back()->kind == Value::Dict && state->kind == Value::Dict,
                at_(at) + "BUILD is allowed only to set a dict's attributes");
          break;
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          throw Error(at_(at) + "pickle opcode " + hex + " is not allowed in a state dict");
        }
      }
    }
  }

 private:
  std::string at_(size_t at) const { return where_ + ": byte " + std::to_string(at) + ": "; }
  char byte() { return bytes(1)[0]; }
  std::string_view bytes(size_t n) {
    if (n > b_.size() - pos_) throw Error(where_ + ": the pickle ends early (truncated)");
    const std::string_view r = b_.substr(pos_, n);
    pos_ += n;
    return r;
  }
  std::string line(size_t at) {
    const size_t nl = b_.find('\n', pos_);
    check(nl != std::string_view::npos && nl - pos_ < 256, at_(at) + "GLOBAL name not terminated");
    std::string r(b_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return r;
  }
  void push(Ref v) {
    check(stack_.size() < (1u << 20), where_ + ": the pickle's stack grows past 2^20 values");
    stack_.push_back(std::move(v));
  }
  Ref pop(size_t at) {
    check(stack_.size() > (marks_.empty() ? 0 : marks_.back()), at_(at) + "pop from an empty stack");
    Ref v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::vector<Ref> pop_mark(size_t at) {
    check(!marks_.empty(), at_(at) + "no MARK to pop to");
    std::vector<Ref> v(stack_.begin() + ptrdiff_t(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return v;
  }
  Ref top(size_t at, Value::Kind k, const char* what) {
    check(stack_.size() > (marks_.empty() ? 0 : marks_.back()) && stack_.back()->kind == k,
          at_(at) + "expected a " + what + " on the stack");
    return stack_.back();
  }
  Ref list_at(size_t at) { return top(at, Value::List, "list"); }
  Ref dict_at(size_t at) { return top(at, Value::Dict, "dict"); }
  void memo(uint64_t k, size_t at) {
    check(!stack_.empty(), at_(at) + "memo of an empty stack");
    check(k < (1u << 22), at_(at) + "memo index " + std::to_string(k) + " out of range");
    if (k >= memo_.size()) memo_.resize(k + 1);
    memo_[k] = stack_.back();
  }
  Ref recall(uint64_t k, size_t at) {
    check(k < memo_.size() && memo_[k], at_(at) + "memo index " + std::to_string(k) + " was never stored");
    return memo_[k];
  }
  static Ref tuple(std::vector<Ref> v) {
    Ref r = make(Value::Tuple);
    r->items = std::move(v);
    return r;
  }
  static Ref string(std::string_view s) {
    Ref r = make(Value::String);
    r->s = std::string(s);
    return r;
  }
  static Ref integer(int64_t i) {
    Ref r = make(Value::Int);
    r->i = i;
    return r;
  }
  Ref global(const std::string& name, size_t at) {
    if (!kCallables.count(name) && !kStorages.count(name)) {
      std::string allowed;
      for (const auto& c : kCallables) allowed += (allowed.empty() ? "" : ", ") + c;
      throw Error(at_(at) + "global '" + name + "' is not allowed in a state dict (only " + allowed +
                  " and the torch.*Storage types)");
    }
    Ref r = make(Value::Global);
    r->s = name;
    return r;
  }
  // ('storage', storage type, key, location, numel)
  Ref persistent(const Ref& pid, size_t at) {
    check(pid->kind == Value::Tuple && pid->items.size() == 5 && pid->items[0]->kind == Value::String &&
              pid->items[0]->s == "storage" && pid->items[1]->kind == Value::Global &&
              pid->items[2]->kind == Value::String && pid->items[4]->kind == Value::Int && pid->items[4]->i >= 0,
          at_(at) + "persistent id is not ('storage', type, key, location, numel)");
    auto st = kStorages.find(pid->items[1]->s);
    check(st != kStorages.end(), at_(at) + "'" + pid->items[1]->s + "' is not a storage type");
    const std::string& key = pid->items[2]->s;
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      Ref r = make(Value::Storage);
      r->tensor = load_(key, st->second, pid->items[4]->i);
      it = storages_.emplace(key, r).first;
    }
    check(it->second->tensor.dtype == st->second, at_(at) + "storage '" + key + "' used with two element types");
    return it->second;
  }
  static std::vector<int64_t> ints(const Ref& v, size_t at, const std::string& where, const char* what) {
    check(v->kind == Value::Tuple, where + std::string(what) + " is not a tuple");
    std::vector<int64_t> r;
    for (const Ref& x : v->items) {
      check(x->kind == Value::Int && x->i >= 0, where + std::string(what) + " holds a value that is not a size");
      r.push_back(x->i);
    }
    return r;
  }
  Ref reduce(const Ref& fn, const Ref& args, size_t at) {
    check(fn->kind == Value::Global && kCallables.count(fn->s) && args->kind == Value::Tuple,
          at_(at) + "REDUCE of something other than an allowed callable");
    const std::vector<Ref>& a = args->items;
    if (fn->s == "collections.OrderedDict") {
      check(a.empty(), at_(at) + "OrderedDict called with arguments");
      return make(Value::Dict);
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      check(a.size() >= 1 && a[0]->kind == Value::TensorV, at_(at) + "_rebuild_parameter without a tensor");
      return a[0];
    }
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    check(a.size() >= 4 && a[0]->kind == Value::Storage && a[1]->kind == Value::Int && a[1]->i >= 0,
          at_(at) + "_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
    const Tensor& st = a[0]->tensor;
    const Shape shape = ints(a[2], at, at_(at), "the tensor's size");
    const std::vector<int64_t> stride = ints(a[3], at, at_(at), "the tensor's stride");
    check(shape.size() == stride.size(), at_(at) + "size and stride differ in length");
    int64_t last = a[1]->i, expect = 1;
    bool contiguous = true;
    for (size_t k = shape.size(); k-- > 0;) {
      check(shape[k] < (int64_t(1) << 40) && stride[k] < (int64_t(1) << 40), at_(at) + "size or stride too large");
      if (shape[k] > 1 && stride[k] != expect) contiguous = false;
      check(shape[k] == 0 || expect <= (int64_t(1) << 62) / shape[k], at_(at) + "the tensor's size overflows");
      expect *= shape[k];
      if (shape[k] > 0) last += (shape[k] - 1) * stride[k];
    }
    const int64_t n = expect;
    // Views never hold more elements than their storage (a stride-0 view could, and is refused).
    check(n == 0 || (last < st.numel() && n <= st.numel()),
          at_(at) + "the tensor reaches element " + std::to_string(std::max(last, n - 1)) + " of a storage of " +
              std::to_string(st.numel()));
    const size_t es = dtype_size(st.dtype);
    Ref r = make(Value::TensorV);
    if (contiguous) {
      r->tensor = Tensor{st.dtype, shape, static_cast<char*>(st.data) + a[1]->i * int64_t(es), st.owner};
      return r;
    }
    Tensor t = Tensor::zeros(st.dtype, shape);
    std::vector<int64_t> idx(shape.size(), 0);
    for (int64_t e = 0; e < n; ++e) {
      int64_t src = a[1]->i;
      for (size_t k = 0; k < shape.size(); ++k) src += idx[k] * stride[k];
      std::memcpy(static_cast<char*>(t.data) + e * int64_t(es), static_cast<const char*>(st.data) + src * int64_t(es),
                  es);
      for (size_t k = shape.size(); k-- > 0;)
        if (++idx[k] < shape[k]) break;
        else idx[k] = 0;
    }
    r->tensor = t;
    return r;
  }

  std::string_view b_;
  size_t pos_ = 0;
  const StorageLoader& load_;
  const std::string& where_;
  std::vector<Ref> stack_, memo_;
  std::vector<size_t> marks_;
  std::map<std::string, Ref> storages_;
};

}  // namespace

NamedTensors unpickle_state_dict(std::string_view pickle, const StorageLoader& load, const std::string& where) {
  const Ref root = Unpickler(pickle, load, where).run();
  check(root->kind == Value::Dict, where + ": the pickle holds no dict of tensors");
  NamedTensors r;
  std::set<std::string> seen;
  for (size_t k = 0; k < root->items.size(); k += 2) {
    const Ref &key = root->items[k], &v = root->items[k + 1];
    check(key->kind == Value::String, where + ": a state dict key is not a string");
    check(v->kind == Value::TensorV, where + ": '" + key->s + "' is not a tensor (a checkpoint holding more than a "
                                               "state dict: save model.state_dict() itself)");
    check(seen.insert(key->s).second, where + ": tensor '" + key->s + "' appears twice");
    r.emplace_back(key->s, v->tensor);
  }
  return r;
}

NamedTensors read_torch_checkpoint(const std::string& path) {
  const MappedFile f = map_file(path);
  if (f.size >= 2 && f.data[0] == char(0x80))
    throw Error(path + ": a legacy (before PyTorch 1.6) torch.save file; re-save it with a current PyTorch");
  const std::map<std::string, ZipEntry> entries = read_zip_directory(f.data, f.size, path);
  std::string prefix;
  const ZipEntry* pkl = nullptr;
  for (const auto& [name, e] : entries)
    if (name.ends_with("/data.pkl") && name.find('/') == name.size() - 9) {
      check(!pkl, path + ": two data.pkl entries");
      pkl = &e, prefix = name.substr(0, name.size() - 8);
    }
  check(pkl != nullptr, path + ": no ARCHIVE/data.pkl entry (not a torch.save file)");
  auto load = [&](const std::string& key, DType dt, int64_t numel) {
    auto it = entries.find(prefix + "data/" + key);
    check(it != entries.end(), path + ": storage '" + key + "' has no entry " + prefix + "data/" + key);
    check(numel >= 0 && uint64_t(numel) <= it->second.size / dtype_size(dt),
          path + ": storage '" + key + "' holds " + std::to_string(it->second.size) + " bytes, fewer than " +
              std::to_string(numel) + " elements of " + dtype_name(dt));
    return Tensor{dt, {numel}, const_cast<char*>(f.data + it->second.offset), f.owner};
  };
  return unpickle_state_dict(std::string_view(f.data + pkl->offset, pkl->size), load, path);
}

}  // namespace m3
