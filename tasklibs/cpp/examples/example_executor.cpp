// An example executor with a few tasks. Register it in a governor config:
//
//   [executors.cppex]
//   command = "/path/to/build/rain-cpp-example"
//
// and create its tasks from Python, e.g.
//   Task([blob("world")], 1, task_type="cppex/hello")
#include <rain/task.h>

#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

// "Hello <input>!"
void hello(rain::Context &ctx, rain::Inputs &inputs, rain::Outputs &outputs) {
    if (inputs.size() != 1) ctx.fail("hello takes one input");
    ctx.debug("greeting " + std::to_string(inputs[0].bytes().size()) + " bytes");
    ctx.set_attribute("in_memory", inputs[0].in_memory());
    outputs[0].set_text("Hello " + inputs[0].text() + "!");
}

// An image-like transform: every byte of the input file inverted (255 - b), written to
// a file that becomes the output.
void invert(rain::Context &ctx, rain::Inputs &inputs, rain::Outputs &outputs) {
    std::ifstream in(inputs[0].path(), std::ios::binary);
    if (!in) ctx.fail("cannot open " + inputs[0].path());
    std::string path = outputs[0].make_path();
    std::ofstream out(path, std::ios::binary);
    char buf[65536];
    while (in) {
        in.read(buf, sizeof buf);
        std::streamsize n = in.gcount();
        for (std::streamsize i = 0; i < n; i++) buf[i] = static_cast<char>(255 - (unsigned char)buf[i]);
        out.write(buf, n);
    }
    out.close();
    if (!out) ctx.fail("cannot write " + path);
    outputs[0].set_file(path);
    if (!inputs[0].content_type().empty()) outputs[0].set_content_type(inputs[0].content_type());
}

// Reads its config: {"times": int, "separator": text} (both optional); returns the
// length and the client's attribute "tag" (if given) in task.info.user.
void repeat(rain::Context &ctx, rain::Inputs &inputs, rain::Outputs &outputs) {
    int64_t times = ctx.config()["times"].as_int(2);
    std::string separator = ctx.config()["separator"].as_string(" ");
    if (times < 0) ctx.fail("times must not be negative, got " + std::to_string(times));
    std::string text;
    for (int64_t i = 0; i < times; i++) text += (i ? separator : "") + inputs[0].text();
    ctx.set_attribute("length", rain::Value(static_cast<long long>(text.size())));
    if (ctx.attributes().contains("tag")) ctx.set_attribute("tag", ctx.attributes()["tag"]);
    outputs[0].set_text(text);
}

// Always fails, with the message from its config (or a default one).
void fail(rain::Context &ctx, rain::Inputs &, rain::Outputs &) {
    ctx.debug("about to fail");
    ctx.fail(ctx.config()["message"].as_string("this task fails on purpose"));
}

// Throws a standard exception: fails only this task.
void throw_task(rain::Context &, rain::Inputs &inputs, rain::Outputs &) {
    std::vector<int> empty;
    (void)empty.at(inputs.size() + 3);
}

// Crashes the whole executor; the governor reports the tail of its stderr.
void crash(rain::Context &, rain::Inputs &, rain::Outputs &) {
    std::fprintf(stderr, "cppex: crashing on purpose\n");
    std::fflush(stderr);
    std::abort();
}

// The first input, passed through unchanged.
void pass(rain::Context &, rain::Inputs &inputs, rain::Outputs &outputs) {
    outputs[0].set_input(inputs[0]);
}

// Text integer in, the next integer out: the step of the chain and burst benchmarks.
void increment(rain::Context &ctx, rain::Inputs &inputs, rain::Outputs &outputs) {
    const std::string &text = inputs[0].bytes();
    char *end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0') ctx.fail("not an integer: '" + text + "'");
    outputs[0].set_text(std::to_string(value + 1));
}

// A directory output: one file per line of the input text (line-0, line-1, ...).
void split_lines(rain::Context &ctx, rain::Inputs &inputs, rain::Outputs &outputs) {
    std::string dir = outputs[0].make_path();
    if (mkdir(dir.c_str(), 0755) != 0) ctx.fail("cannot create " + dir);
    std::istringstream lines(inputs[0].text());
    std::string line;
    for (int i = 0; std::getline(lines, line); i++)
        std::ofstream(dir + "/line-" + std::to_string(i)) << line;
    outputs[0].set_directory(dir);
}

// A directory input: the sorted names of its entries, one per line.
void list_dir(rain::Context &ctx, rain::Inputs &inputs, rain::Outputs &outputs) {
    if (!inputs[0].is_dir()) ctx.fail("list_dir needs a directory input");
    DIR *dir = opendir(inputs[0].path().c_str());
    if (!dir) ctx.fail("cannot open " + inputs[0].path());
    std::vector<std::string> names;
    while (struct dirent *entry = readdir(dir))
        if (entry->d_name[0] != '.') names.push_back(entry->d_name);
    closedir(dir);
    std::sort(names.begin(), names.end());
    std::string text;
    for (const std::string &name : names) text += name + "\n";
    outputs[0].set_text(text);
}

}  // namespace

int main() {
    rain::Executor exec("cppex");
    exec.add_task("hello", hello);
    exec.add_task("invert", invert);
    exec.add_task("repeat", repeat);
    exec.add_task("fail", fail);
    exec.add_task("throw", throw_task);
    exec.add_task("crash", crash);
    exec.add_task("pass", pass);
    exec.add_task("increment", increment);
    exec.add_task("split_lines", split_lines);
    exec.add_task("list_dir", list_dir);
    return exec.start();
}
