// Rain tasks in C++: the executor side of the `rain-executor/1` protocol.
//
// A program built with this library is an *executor*: a governor starts it, sends it
// tasks of type `NAME/METHOD` and reuses it task after task. Register it in the
// governor's TOML config and call its tasks from Python with
// `Task(inputs, outputs, task_type="NAME/METHOD", config={...})`:
//
//     [executors.NAME]
//     command = "/path/to/your-executor"
//
//     #include <rain/task.h>
//
//     int main() {
//         rain::Executor exec("NAME");
//         exec.add_task("hello", [](rain::Context &ctx, rain::Inputs &inputs,
//                                   rain::Outputs &outputs) {
//             outputs[0].set_text("Hello " + inputs[0].text() + "!");
//         });
//         return exec.start();
//     }
//
// Errors: a task fails with a message when it calls `ctx.fail(...)` or throws any
// exception; the executor stays up for later tasks. If the process crashes instead, the
// governor fails the task with the tail of what the executor wrote to stdout/stderr.
//
// The protocol is described in docs/executor-protocol.md of Rain for Python.
#ifndef RAIN_TASK_H
#define RAIN_TASK_H

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace rain {

// A decoded CBOR value: how the task's config and attributes arrive.
//
// Text and byte strings are both held in a std::string (bytes may contain zeros).
// Reading a missing key or index gives a null value, so `cfg["a"]["b"].as_int(7)`
// never throws for absent data; the `as_*` accessors throw rain::TaskError when the
// value has another type (which fails the task with a clear message).
class Value {
public:
    enum class Type { Null, Bool, Int, Float, Text, Bytes, Array, Map };

    Value() = default;
    Value(std::nullptr_t) {}
    Value(bool v) : type_(Type::Bool), int_(v) {}
    Value(int v) : type_(Type::Int), int_(v) {}
    Value(long v) : type_(Type::Int), int_(v) {}
    Value(long long v) : type_(Type::Int), int_(v) {}
    Value(unsigned v) : type_(Type::Int), int_(v) {}
    Value(unsigned long v) : type_(Type::Int), int_(static_cast<int64_t>(v)) {}
    Value(unsigned long long v) : type_(Type::Int), int_(static_cast<int64_t>(v)) {}
    Value(double v) : type_(Type::Float), float_(v) {}
    Value(const char *v) : type_(Type::Text), str_(v) {}
    Value(std::string v) : type_(Type::Text), str_(std::move(v)) {}
    // A byte string (CBOR major type 2).
    static Value bytes(std::string data);
    static Value array(std::vector<Value> items = {});
    static Value map(std::vector<std::pair<Value, Value>> entries = {});

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }
    bool is_bool() const { return type_ == Type::Bool; }
    bool is_int() const { return type_ == Type::Int; }
    bool is_float() const { return type_ == Type::Float; }
    bool is_text() const { return type_ == Type::Text; }
    bool is_bytes() const { return type_ == Type::Bytes; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_map() const { return type_ == Type::Map; }

    bool as_bool() const;
    int64_t as_int() const;
    double as_double() const;                       // also converts an int
    const std::string &as_string() const;           // text or bytes
    // With a default: the default when the value is null (absent), else as above.
    bool as_bool(bool dflt) const { return is_null() ? dflt : as_bool(); }
    int64_t as_int(int64_t dflt) const { return is_null() ? dflt : as_int(); }
    double as_double(double dflt) const { return is_null() ? dflt : as_double(); }
    std::string as_string(const std::string &dflt) const {
        return is_null() ? dflt : as_string();
    }

    // Arrays and maps: number of items (0 for other types).
    size_t size() const;
    const Value &operator[](size_t index) const;    // null if out of range
    const Value &operator[](const std::string &key) const;  // null if absent
    const Value &operator[](const char *key) const { return (*this)[std::string(key)]; }
    bool contains(const std::string &key) const;
    const std::vector<Value> &items() const { return items_; }
    const std::vector<std::pair<Value, Value>> &entries() const { return entries_; }
    // Builders for arrays and maps.
    void push_back(Value v) { items_.push_back(std::move(v)); }
    void set(const std::string &key, Value v);

    // CBOR bytes of this value, and the value of CBOR bytes (throws rain::TaskError on
    // invalid data). Empty bytes decode to null.
    std::string to_cbor() const;
    static Value from_cbor(const std::string &data);

    // A short human-readable form, e.g. {"scale": 2, "name": "x"}.
    std::string debug_string() const;

private:
    Type type_ = Type::Null;
    int64_t int_ = 0;
    double float_ = 0.0;
    std::string str_;
    std::vector<Value> items_;
    std::vector<std::pair<Value, Value>> entries_;
};

// Thrown by Context::fail(); any exception thrown by a task fails that task.
class TaskError : public std::runtime_error {
public:
    explicit TaskError(const std::string &message) : std::runtime_error(message) {}
};

// The global id of a task or data object.
struct Id {
    uint64_t session = 0;
    uint64_t id = 0;
};

// One input of a task: a blob (bytes) or a directory, in memory or in a file of the
// governor's store. Input files are read-only: never modify, move or delete them.
class Input {
public:
    const Id &id() const { return id_; }
    const std::string &label() const { return label_; }           // "" when none
    const std::string &content_type() const { return content_type_; }  // "" if unknown
    bool is_dir() const { return is_dir_; }
    // True when the data came in the message rather than as a file.
    bool in_memory() const { return in_memory_; }
    // The bytes of a blob (read from its file on first use when it came as a path).
    const std::string &bytes() const;
    std::string text() const { return bytes(); }
    // A path to read: the store's file or directory, or (for data that came in memory)
    // a file this library writes in the working directory on first use.
    const std::string &path() const;
    // The size in bytes as the governor gave it (-1 if unknown).
    int64_t size() const { return size_; }

private:
    friend class Executor;
    Id id_;
    std::string label_, content_type_;
    bool is_dir_ = false, in_memory_ = false;
    int64_t size_ = -1;
    mutable std::string bytes_, path_;
    mutable bool loaded_ = false;
};

// One output of a task. A task sets every output exactly once, with one of the set_*
// calls; an output left unset fails the task.
class Output {
public:
    const Id &id() const { return id_; }
    const std::string &label() const { return label_; }   // "" when none
    bool is_dir() const { return is_dir_; }
    // The content type declared by the graph ("" when none).
    const std::string &declared_content_type() const { return declared_; }

    // A blob in memory.
    void set_bytes(std::string data);
    // A text blob (content type "text" unless set otherwise).
    void set_text(std::string text);
    // A file (blob output) or a directory (directory output) the task wrote. Ownership
    // passes to the governor, which moves it into its store: do not touch it afterwards.
    void set_file(const std::string &path);
    void set_directory(const std::string &path);
    // The same data as one of this task's inputs (no copy is made here).
    void set_input(const Input &input);
    // The content type of the data (must be a sub-type of the declared one).
    void set_content_type(std::string content_type);
    // A fresh, unused path in the working directory to write this output to (a file or
    // a directory), e.g. `std::ofstream(out.make_path())`; then call set_file() with it.
    std::string make_path() const;

private:
    friend class Executor;
    enum class Kind { Unset, Memory, Path, Input };
    Id id_;
    std::string label_, declared_;
    bool is_dir_ = false;
    Kind kind_ = Kind::Unset;
    std::string data_;               // bytes, or the path
    Id input_;
    bool has_content_type_ = false;
    std::string content_type_;
    std::string workdir_;
};

using Inputs = std::vector<Input>;
using Outputs = std::vector<Output>;

// What a task function knows about its task, and its ways to report back.
class Context {
public:
    const Id &task_id() const { return task_id_; }
    const std::string &task_type() const { return type_; }      // e.g. "cppex/hello"
    const std::string &method() const { return method_; }       // e.g. "hello"
    const std::string &name() const { return name_; }           // "" when none
    // The task's config, decoded from CBOR (null when the task has none), and its bytes.
    const Value &config() const { return config_; }
    const std::string &config_bytes() const { return config_bytes_; }
    // The client's free-form attributes of the task (`spec.user`, a map).
    const Value &attributes() const { return attributes_; }
    // CPUs given to the task, and any named resource (0 when not given).
    int64_t cpus() const { return resources_["cpus"].as_int(1); }
    double resource(const std::string &name) const { return resources_[name].as_double(0.0); }

    // A line of the task's debug log, shown with a failure and in task.info.debug.
    void debug(const std::string &line);
    // A value returned to the client in task.info.user[key].
    void set_attribute(const std::string &key, Value value) { user_.set(key, std::move(value)); }
    // Fail the task with this message (throws rain::TaskError; do not catch it).
    [[noreturn]] void fail(const std::string &message) { throw TaskError(message); }

private:
    friend class Executor;
    Id task_id_;
    std::string type_, method_, name_, config_bytes_;
    Value config_, attributes_, resources_;
    Value user_ = Value::map();
    std::string debug_;
};

using TaskFunction = std::function<void(Context &, Inputs &, Outputs &)>;

// The executor: register task functions by method name, then start() serves the
// governor until it goes away. Tasks run one at a time, in the order they arrive.
class Executor {
public:
    explicit Executor(std::string name);
    ~Executor();
    Executor(const Executor &) = delete;
    Executor &operator=(const Executor &) = delete;

    // `fn` runs tasks of type `NAME/method`.
    Executor &add_task(const std::string &method, TaskFunction fn);
    // Connects to the governor (from the RAIN_EXECUTOR_* environment) and serves tasks.
    // Returns 0 when the governor closes the connection, 1 (after printing why to stderr)
    // when the program was not started by a governor or the connection broke.
    int start();

private:
    std::string run(const Value &call);     // one call -> the CBOR of its result
    void read_inputs(const Value &items, Inputs &inputs);
    void read_outputs(const Value &items, Outputs &outputs);
    std::string name_;
    std::map<std::string, TaskFunction> tasks_;
    std::string workdir_;
    int fd_ = -1;
};

}  // namespace rain

#endif  // RAIN_TASK_H
