// rain::Value and its CBOR form, through libcbor.
#include <cbor.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "rain/task.h"

namespace rain {

namespace {

const Value &null_value() {
    static const Value null;
    return null;
}

const char *type_name(Value::Type type) {
    switch (type) {
        case Value::Type::Null: return "null";
        case Value::Type::Bool: return "bool";
        case Value::Type::Int: return "int";
        case Value::Type::Float: return "float";
        case Value::Type::Text: return "text";
        case Value::Type::Bytes: return "bytes";
        case Value::Type::Array: return "array";
        case Value::Type::Map: return "map";
    }
    return "?";
}

[[noreturn]] void wrong_type(const Value &value, const char *wanted) {
    throw TaskError(std::string("expected ") + wanted + ", got " + type_name(value.type()) +
                    " " + value.debug_string());
}

// Encoding: libcbor's encoders write into a buffer and return 0 when it is too small.
class Writer {
public:
    template <typename F>
    void put(F encode) {
        for (;;) {
            size_t used = encode(reinterpret_cast<unsigned char *>(&buf_[0]) + len_,
                                 buf_.size() - len_);
            if (used) {
                len_ += used;
                return;
            }
            buf_.resize(buf_.size() * 2 + 64);
        }
    }
    void raw(const std::string &data) {
        if (buf_.size() - len_ < data.size()) buf_.resize(len_ + data.size() + 64);
        data.copy(&buf_[len_], data.size());
        len_ += data.size();
    }
    void value(const Value &v) {
        switch (v.type()) {
            case Value::Type::Null:
                put([](unsigned char *b, size_t n) { return cbor_encode_null(b, n); });
                break;
            case Value::Type::Bool: {
                bool x = v.as_bool();
                put([x](unsigned char *b, size_t n) { return cbor_encode_bool(x, b, n); });
                break;
            }
            case Value::Type::Int: {
                int64_t x = v.as_int();
                if (x >= 0)
                    put([x](unsigned char *b, size_t n) {
                        return cbor_encode_uint(static_cast<uint64_t>(x), b, n);
                    });
                else
                    put([x](unsigned char *b, size_t n) {
                        return cbor_encode_negint(static_cast<uint64_t>(-1 - x), b, n);
                    });
                break;
            }
            case Value::Type::Float: {
                double x = v.as_double();
                put([x](unsigned char *b, size_t n) { return cbor_encode_double(x, b, n); });
                break;
            }
            case Value::Type::Text: {
                size_t len = v.as_string().size();
                put([len](unsigned char *b, size_t n) { return cbor_encode_string_start(len, b, n); });
                raw(v.as_string());
                break;
            }
            case Value::Type::Bytes: {
                size_t len = v.as_string().size();
                put([len](unsigned char *b, size_t n) {
                    return cbor_encode_bytestring_start(len, b, n);
                });
                raw(v.as_string());
                break;
            }
            case Value::Type::Array: {
                size_t len = v.items().size();
                put([len](unsigned char *b, size_t n) { return cbor_encode_array_start(len, b, n); });
                for (const Value &item : v.items()) value(item);
                break;
            }
            case Value::Type::Map: {
                size_t len = v.entries().size();
                put([len](unsigned char *b, size_t n) { return cbor_encode_map_start(len, b, n); });
                for (const auto &entry : v.entries()) {
                    value(entry.first);
                    value(entry.second);
                }
                break;
            }
        }
    }
    std::string take() {
        buf_.resize(len_);
        return std::move(buf_);
    }

private:
    std::string buf_ = std::string(256, '\0');
    size_t len_ = 0;
};

std::string chunks(const cbor_item_t *item, bool text) {
    std::string out;
    bool definite = text ? cbor_string_is_definite(item) : cbor_bytestring_is_definite(item);
    if (definite) {
        const unsigned char *data = text ? cbor_string_handle(item) : cbor_bytestring_handle(item);
        size_t len = text ? cbor_string_length(item) : cbor_bytestring_length(item);
        if (data) out.assign(reinterpret_cast<const char *>(data), len);
        return out;
    }
    size_t count = text ? cbor_string_chunk_count(item) : cbor_bytestring_chunk_count(item);
    cbor_item_t **parts = text ? cbor_string_chunks_handle(item) : cbor_bytestring_chunks_handle(item);
    for (size_t i = 0; i < count; i++) out += chunks(parts[i], text);
    return out;
}

Value convert(const cbor_item_t *item) {
    switch (cbor_typeof(item)) {
        case CBOR_TYPE_UINT:
            return Value(static_cast<long long>(cbor_get_int(item)));
        case CBOR_TYPE_NEGINT:
            return Value(-1 - static_cast<long long>(cbor_get_int(item)));
        case CBOR_TYPE_BYTESTRING:
            return Value::bytes(chunks(item, false));
        case CBOR_TYPE_STRING:
            return Value(chunks(item, true));
        case CBOR_TYPE_ARRAY: {
            Value out = Value::array();
            size_t n = cbor_array_size(item);
            cbor_item_t **handle = cbor_array_handle(item);
            for (size_t i = 0; i < n; i++) out.push_back(convert(handle[i]));
            return out;
        }
        case CBOR_TYPE_MAP: {
            std::vector<std::pair<Value, Value>> entries;
            size_t n = cbor_map_size(item);
            struct cbor_pair *pairs = cbor_map_handle(item);
            entries.reserve(n);
            for (size_t i = 0; i < n; i++)
                entries.emplace_back(convert(pairs[i].key), convert(pairs[i].value));
            return Value::map(std::move(entries));
        }
        case CBOR_TYPE_TAG: {
            cbor_item_t *inner = cbor_tag_item(item);
            Value out = convert(inner);
            cbor_decref(&inner);
            return out;
        }
        case CBOR_TYPE_FLOAT_CTRL:
            if (cbor_float_ctrl_is_ctrl(item)) {
                uint8_t ctrl = cbor_ctrl_value(item);
                if (ctrl == CBOR_CTRL_TRUE) return Value(true);
                if (ctrl == CBOR_CTRL_FALSE) return Value(false);
                return Value();
            }
            return Value(cbor_float_get_float(item));
    }
    return Value();
}

void quote(std::ostringstream &out, const std::string &s) {
    out << '"';
    for (char c : s) {
        if (c == '"' || c == '\\') out << '\\' << c;
        else if (static_cast<unsigned char>(c) < 0x20) out << "\\x" << std::hex << int(c) << std::dec;
        else out << c;
    }
    out << '"';
}

void describe(std::ostringstream &out, const Value &v) {
    switch (v.type()) {
        case Value::Type::Null: out << "null"; break;
        case Value::Type::Bool: out << (v.as_bool() ? "true" : "false"); break;
        case Value::Type::Int: out << v.as_int(); break;
        case Value::Type::Float: out << v.as_double(); break;
        case Value::Type::Text: quote(out, v.as_string()); break;
        case Value::Type::Bytes: out << "<" << v.as_string().size() << " bytes>"; break;
        case Value::Type::Array: {
            out << '[';
            for (size_t i = 0; i < v.size(); i++) {
                if (i) out << ", ";
                describe(out, v[i]);
            }
            out << ']';
            break;
        }
        case Value::Type::Map: {
            out << '{';
            bool first = true;
            for (const auto &entry : v.entries()) {
                if (!first) out << ", ";
                first = false;
                describe(out, entry.first);
                out << ": ";
                describe(out, entry.second);
            }
            out << '}';
            break;
        }
    }
}

}  // namespace

Value Value::bytes(std::string data) {
    Value v(std::move(data));
    v.type_ = Type::Bytes;
    return v;
}

Value Value::array(std::vector<Value> items) {
    Value v;
    v.type_ = Type::Array;
    v.items_ = std::move(items);
    return v;
}

Value Value::map(std::vector<std::pair<Value, Value>> entries) {
    Value v;
    v.type_ = Type::Map;
    v.entries_ = std::move(entries);
    return v;
}

bool Value::as_bool() const {
    if (type_ != Type::Bool) wrong_type(*this, "bool");
    return int_ != 0;
}

int64_t Value::as_int() const {
    if (type_ != Type::Int) wrong_type(*this, "int");
    return int_;
}

double Value::as_double() const {
    if (type_ == Type::Int) return static_cast<double>(int_);
    if (type_ != Type::Float) wrong_type(*this, "number");
    return float_;
}

const std::string &Value::as_string() const {
    if (type_ != Type::Text && type_ != Type::Bytes) wrong_type(*this, "text or bytes");
    return str_;
}

size_t Value::size() const {
    if (type_ == Type::Array) return items_.size();
    if (type_ == Type::Map) return entries_.size();
    return 0;
}

const Value &Value::operator[](size_t index) const {
    if (type_ != Type::Array || index >= items_.size()) return null_value();
    return items_[index];
}

const Value &Value::operator[](const std::string &key) const {
    if (type_ == Type::Map)
        for (const auto &entry : entries_)
            if (entry.first.type_ == Type::Text && entry.first.str_ == key) return entry.second;
    return null_value();
}

bool Value::contains(const std::string &key) const {
    if (type_ == Type::Map)
        for (const auto &entry : entries_)
            if (entry.first.type_ == Type::Text && entry.first.str_ == key) return true;
    return false;
}

void Value::set(const std::string &key, Value v) {
    if (type_ == Type::Null) type_ = Type::Map;
    if (type_ != Type::Map) wrong_type(*this, "map");
    for (auto &entry : entries_)
        if (entry.first.type_ == Type::Text && entry.first.str_ == key) {
            entry.second = std::move(v);
            return;
        }
    entries_.emplace_back(Value(key), std::move(v));
}

std::string Value::to_cbor() const {
    Writer writer;
    writer.value(*this);
    return writer.take();
}

Value Value::from_cbor(const std::string &data) {
    if (data.empty()) return Value();
    struct cbor_load_result result;
    cbor_item_t *item = cbor_load(reinterpret_cast<cbor_data>(data.data()), data.size(), &result);
    if (item == nullptr)
        throw TaskError("invalid CBOR data (libcbor error " + std::to_string(result.error.code) +
                        " at byte " + std::to_string(result.error.position) + ")");
    Value out = convert(item);
    cbor_decref(&item);
    return out;
}

std::string Value::debug_string() const {
    std::ostringstream out;
    describe(out, *this);
    return out.str();
}

}  // namespace rain
