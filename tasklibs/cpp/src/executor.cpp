// rain::Executor: the connection to the governor and the run of one call.
#include <errno.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "rain/task.h"

namespace rain {

namespace {

const char *PROTOCOL = "rain-executor/1";
const char *OUTPUT_DIR = ".rain-outputs";   // handed-over outputs; see make_path()
const char *INPUT_DIR = ".rain-inputs";     // memory inputs written out by Input::path()

uint64_t counter = 0;                        // unique names in the working directory
std::string input_dir = INPUT_DIR;           // absolute once start() knows the directory
std::vector<std::string> written_inputs;     // removed after each call

std::string unique_name(const std::string &dir, const std::string &stem) {
    return dir + "/" + stem + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
}

double now() {
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6;
}

bool read_exact(int fd, char *buf, size_t len) {
    while (len) {
        ssize_t got = ::read(fd, buf, len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        buf += got;
        len -= static_cast<size_t>(got);
    }
    return true;
}

bool write_frame(int fd, const std::string &payload) {
    uint32_t n = static_cast<uint32_t>(payload.size());
    unsigned char head[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                             static_cast<unsigned char>(n >> 16),
                             static_cast<unsigned char>(n >> 24)};
    std::string frame(reinterpret_cast<char *>(head), 4);
    frame += payload;
    const char *p = frame.data();
    size_t left = frame.size();
    while (left) {
        ssize_t sent = ::send(fd, p, left, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) return false;
        p += sent;
        left -= static_cast<size_t>(sent);
    }
    return true;
}

Id read_id(const Value &v) {
    Id id;
    id.session = static_cast<uint64_t>(v[size_t(0)].as_int());
    id.id = static_cast<uint64_t>(v[size_t(1)].as_int());
    return id;
}

Value id_value(const Id &id) {
    return Value::array({Value(static_cast<unsigned long long>(id.session)),
                         Value(static_cast<unsigned long long>(id.id))});
}

std::string text_or_empty(const Value &v) { return v.is_text() ? v.as_string() : std::string(); }

std::string absolute(const std::string &workdir, const std::string &path) {
    return !path.empty() && path[0] == '/' ? path : workdir + "/" + path;
}

// Hand an output file or directory over under a name no later call uses (calls may be
// queued, and the governor moves the path only when it reads the result).
std::string hand_over(const std::string &workdir, const std::string &path) {
    std::string full = absolute(workdir, path);
    std::string prefix = workdir + "/" + OUTPUT_DIR + "/";
    if (full.compare(0, prefix.size(), prefix) == 0) return full;
    std::string base = full.substr(full.find_last_of('/') + 1);
    std::string target = unique_name(workdir + "/" + OUTPUT_DIR, base.empty() ? "out" : base);
    if (::rename(full.c_str(), target.c_str()) == 0) return target;
    return full;     // another file system: the governor copies it
}

std::string describe_output(size_t index, const Output &out) {
    std::string s = "output " + std::to_string(index);
    if (!out.label().empty()) s += " ('" + out.label() + "')";
    return s;
}

}  // namespace

// -- Input / Output / Context ------------------------------------------------------------------

const std::string &Input::bytes() const {
    if (!loaded_) {
        if (is_dir_) throw TaskError("input '" + label_ + "' is a directory; use path()");
        std::ifstream in(path_, std::ios::binary);
        if (!in) throw TaskError("cannot read input file " + path_ + ": " + std::strerror(errno));
        std::ostringstream content;
        content << in.rdbuf();
        bytes_ = content.str();
        loaded_ = true;
    }
    return bytes_;
}

const std::string &Input::path() const {
    if (path_.empty()) {
        std::string path = unique_name(input_dir, "in");
        std::ofstream out(path, std::ios::binary);
        out.write(bytes_.data(), static_cast<std::streamsize>(bytes_.size()));
        if (!out) throw TaskError("cannot write input to " + path + ": " + std::strerror(errno));
        path_ = path;
        written_inputs.push_back(path_);
    }
    return path_;
}

void Output::set_bytes(std::string data) {
    kind_ = Kind::Memory;
    data_ = std::move(data);
}

void Output::set_text(std::string text) {
    set_bytes(std::move(text));
    if (!has_content_type_) set_content_type("text");
}

void Output::set_file(const std::string &path) {
    kind_ = Kind::Path;
    data_ = path;
}

void Output::set_directory(const std::string &path) { set_file(path); }

void Output::set_input(const Input &input) {
    kind_ = Kind::Input;
    input_ = input.id();
}

void Output::set_content_type(std::string content_type) {
    has_content_type_ = true;
    content_type_ = std::move(content_type);
}

std::string Output::make_path() const {
    return unique_name(workdir_ + "/" + OUTPUT_DIR, "out");
}

void Context::debug(const std::string &line) {
    debug_ += line;
    debug_ += '\n';
}

// -- Executor ----------------------------------------------------------------------------------

Executor::Executor(std::string name) : name_(std::move(name)) {}

Executor::~Executor() {
    if (fd_ >= 0) ::close(fd_);
}

Executor &Executor::add_task(const std::string &method, TaskFunction fn) {
    tasks_[method] = std::move(fn);
    return *this;
}

int Executor::start() {
    const char *socket_path = std::getenv("RAIN_EXECUTOR_SOCKET");
    const char *executor_id = std::getenv("RAIN_EXECUTOR_ID");
    const char *executor_type = std::getenv("RAIN_EXECUTOR_TYPE");
    if (!socket_path || !executor_id || !executor_type) {
        std::fprintf(stderr,
                     "%s: this program is a Rain executor; a governor starts it. Register it "
                     "in the governor's config:\n  [executors.%s]\n  command = \"...\"\n",
                     name_.c_str(), name_.c_str());
        return 1;
    }
    // Die with the governor even in the middle of a long task.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char cwd[4096];
    workdir_ = getcwd(cwd, sizeof cwd) ? cwd : ".";
    input_dir = workdir_ + "/" + INPUT_DIR;
    ::mkdir(OUTPUT_DIR, 0700);
    ::mkdir(input_dir.c_str(), 0700);

    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr;
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path, sizeof addr.sun_path - 1);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<struct sockaddr *>(&addr), sizeof addr) != 0) {
        std::fprintf(stderr, "%s: cannot connect to %s: %s\n", name_.c_str(), socket_path,
                     std::strerror(errno));
        return 1;
    }
    Value reg = Value::map();
    reg.set("protocol", PROTOCOL);
    reg.set("executor_id", Value(std::atoll(executor_id)));
    reg.set("executor_type", executor_type);
    reg.set("pipeline", true);
    if (!write_frame(fd_, Value::array({"register", reg}).to_cbor())) {
        std::fprintf(stderr, "%s: cannot register: %s\n", name_.c_str(), std::strerror(errno));
        return 1;
    }
    std::string payload;
    for (;;) {
        unsigned char head[4];
        if (!read_exact(fd_, reinterpret_cast<char *>(head), 4)) return 0;   // governor gone
        uint32_t len = head[0] | (head[1] << 8) | (head[2] << 16) | (uint32_t(head[3]) << 24);
        payload.resize(len);
        if (!read_exact(fd_, &payload[0], len)) return 0;
        Value message;
        try {
            message = Value::from_cbor(payload);
        } catch (const std::exception &exc) {
            std::fprintf(stderr, "%s: undecodable message: %s\n", name_.c_str(), exc.what());
            return 1;
        }
        if (!message[size_t(0)].is_text() || message[size_t(0)].as_string() != "call")
            continue;     // drop_cached (nothing is cached here) and future hints
        std::string result = run(message[size_t(1)]);
        if (!write_frame(fd_, result)) return 0;
    }
}

void Executor::read_inputs(const Value &items, Inputs &inputs) {
    inputs.resize(items.size());
    for (size_t i = 0; i < items.size(); i++) {
        const Value &item = items[i];
        Input &in = inputs[i];
        in.id_ = read_id(item["id"]);
        in.label_ = text_or_empty(item["label"]);
        in.content_type_ = text_or_empty(item["content_type"]);
        in.is_dir_ = text_or_empty(item["data_type"]) == "dir";
        in.size_ = item["size"].is_int() ? item["size"].as_int() : -1;
        const Value &location = item["location"];
        std::string kind = text_or_empty(location[size_t(0)]);
        if (kind == "memory") {
            in.in_memory_ = true;
            in.bytes_ = location[size_t(1)].as_string();
            in.loaded_ = true;
        } else if (kind == "path") {
            in.path_ = location[size_t(1)].as_string();
        } else {
            throw TaskError("input " + std::to_string(i) + " came as '" + kind +
                            "', which this executor does not keep");
        }
    }
}

void Executor::read_outputs(const Value &items, Outputs &outputs) {
    outputs.resize(items.size());
    for (size_t i = 0; i < items.size(); i++) {
        const Value &item = items[i];
        Output &out = outputs[i];
        out.id_ = read_id(item["id"]);
        out.label_ = text_or_empty(item["label"]);
        out.declared_ = text_or_empty(item["content_type"]);
        out.is_dir_ = text_or_empty(item["data_type"]) == "dir";
        out.workdir_ = workdir_;
    }
}

std::string Executor::run(const Value &call) {
    double start = now();
    auto clock = std::chrono::steady_clock::now();
    Context ctx;
    Inputs inputs;
    Outputs outputs;
    bool ok = false;
    std::string error;
    try {
        const Value &task = call["task"];
        ctx.task_id_ = read_id(task["id"]);
        ctx.type_ = text_or_empty(task["type"]);
        ctx.method_ = text_or_empty(task["method"]);
        ctx.name_ = text_or_empty(task["name"]);
        ctx.attributes_ = task["user"];
        ctx.resources_ = task["resources"];
        if (task["config"].is_bytes()) {
            ctx.config_bytes_ = task["config"].as_string();
            try {
                ctx.config_ = Value::from_cbor(ctx.config_bytes_);
            } catch (const TaskError &exc) {
                throw TaskError(std::string("the task's config is not CBOR: ") + exc.what());
            }
        }
        read_inputs(call["inputs"], inputs);
        read_outputs(call["outputs"], outputs);
        auto fn = tasks_.find(ctx.method_);
        if (fn == tasks_.end()) {
            std::string known;
            for (const auto &entry : tasks_) known += (known.empty() ? "" : ", ") + entry.first;
            throw TaskError("executor '" + name_ + "' has no task '" + ctx.method_ +
                            "' (it has: " + known + ")");
        }
        fn->second(ctx, inputs, outputs);
        for (size_t i = 0; i < outputs.size(); i++)
            if (outputs[i].kind_ == Output::Kind::Unset)
                throw TaskError("task '" + ctx.method_ + "' did not set " +
                                describe_output(i, outputs[i]));
        ok = true;
    } catch (const TaskError &exc) {
        error = exc.what();
    } catch (const std::exception &exc) {
        error = std::string("exception in task '") + ctx.method_ + "': " + exc.what();
    } catch (...) {
        error = "task '" + ctx.method_ + "' threw an exception that is not a std::exception";
    }
    for (const std::string &path : written_inputs) ::unlink(path.c_str());
    written_inputs.clear();
    double duration =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - clock).count();

    Value info = Value::map();
    if (!ctx.debug_.empty()) info.set("debug", ctx.debug_);
    if (ctx.user_.size()) info.set("user", ctx.user_);
    Value body = Value::map();
    body.set("success", ok);
    if (ok) {
        Value items = Value::array();
        for (Output &out : outputs) {
            Value item = Value::map();
            if (out.kind_ == Output::Kind::Memory)
                item.set("location", Value::array({"memory", Value::bytes(std::move(out.data_))}));
            else if (out.kind_ == Output::Kind::Path)
                item.set("location", Value::array({"path", hand_over(workdir_, out.data_)}));
            else
                item.set("location", Value::array({"other", id_value(out.input_)}));
            if (out.has_content_type_) item.set("content_type", out.content_type_);
            items.push_back(std::move(item));
        }
        body.set("outputs", std::move(items));
    } else {
        info.set("error", error);
    }
    body.set("info", std::move(info));
    body.set("start_time", start);
    body.set("duration", duration);
    return Value::array({"result", std::move(body)}).to_cbor();
}

}  // namespace rain
