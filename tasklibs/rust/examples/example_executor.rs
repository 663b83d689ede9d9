//! An example executor with a few tasks. Register it in a governor config:
//!
//! ```toml
//! [executors.rustex]
//! command = "/path/to/target/release/examples/rain-rust-example"
//! ```
//!
//! and create its tasks from Python, e.g. `Task([blob("world")], 1, task_type="rustex/hello")`.
use std::fs;
use std::io::Write;
use std::process::ExitCode;

use rain_task::{Context, Executor, Input, Output, TaskResult, Value};

/// "Hello <input>!"
fn hello(ctx: &mut Context, inputs: &[Input], outputs: &mut [Output]) -> TaskResult {
    if inputs.len() != 1 {
        return Err("hello takes one input".into());
    }
    let name = inputs[0].text()?;
    ctx.debug(format!("greeting {} bytes", name.len()));
    ctx.set_attribute("in_memory", &inputs[0].in_memory());
    outputs[0].set_text(format!("Hello {}!", name));
    Ok(())
}

/// An image-like transform: every byte of the input file inverted (255 - b), written to
/// a file that becomes the output.
fn invert(_ctx: &mut Context, inputs: &[Input], outputs: &mut [Output]) -> TaskResult {
    let data = fs::read(inputs[0].path()?)?;
    let path = outputs[0].make_path();
    let mut file = fs::File::create(&path)?;
    file.write_all(&data.iter().map(|b| 255 - b).collect::<Vec<u8>>())?;
    outputs[0].set_path(&path);
    if let Some(content_type) = inputs[0].content_type() {
        outputs[0].set_content_type(content_type);
    }
    Ok(())
}

fn repeat(ctx: &mut Context, inputs: &[Input], outputs: &mut [Output]) -> TaskResult {
    // Config: {"times": int, "separator": text}, both optional. (With serde's derive,
    // `ctx.config_as::<MyConfig>()` reads it into a struct instead.)
    let times = match ctx.config_get("times") {
        None => 2,
        Some(Value::Integer(n)) if *n >= 0 => *n as usize,
        Some(other) => return Err(format!("times must be a non-negative int, got {:?}", other).into()),
    };
    let separator = match ctx.config_get("separator") {
        None => " ".to_string(),
        Some(Value::Text(s)) => s.clone(),
        Some(other) => return Err(format!("separator must be text, got {:?}", other).into()),
    };
    let text = vec![inputs[0].text()?; times].join(&separator);
    ctx.set_attribute("length", &text.len());
    if let Value::Map(attributes) = ctx.attributes() {
        if let Some(tag) = attributes.get(&Value::Text("tag".into())).cloned() {
            ctx.set_attribute("tag", &tag);
        }
    }
    outputs[0].set_text(text);
    Ok(())
}

/// Always fails, with the message from its config (or a default one).
fn fail(ctx: &mut Context, _inputs: &[Input], _outputs: &mut [Output]) -> TaskResult {
    ctx.debug("about to fail");
    let message = match ctx.config_get("message") {
        Some(Value::Text(message)) => message.clone(),
        _ => "this task fails on purpose".to_string(),
    };
    Err(message.into())
}

/// Panics: fails only this task.
fn panic_task(_ctx: &mut Context, inputs: &[Input], _outputs: &mut [Output]) -> TaskResult {
    let empty: Vec<u8> = Vec::new();
    let _ = empty[inputs.len() + 3];
    Ok(())
}

/// Crashes the whole executor; the governor reports the tail of its stderr.
fn crash(_ctx: &mut Context, _inputs: &[Input], _outputs: &mut [Output]) -> TaskResult {
    eprintln!("rustex: crashing on purpose");
    std::process::abort();
}

/// The first input, passed through unchanged.
fn pass(_ctx: &mut Context, inputs: &[Input], outputs: &mut [Output]) -> TaskResult {
    outputs[0].set_input(&inputs[0]);
    Ok(())
}

/// Text integer in, the next integer out: the step of the chain and burst benchmarks.
fn increment(_ctx: &mut Context, inputs: &[Input], outputs: &mut [Output]) -> TaskResult {
    let text = inputs[0].text()?;
    let value: i64 = text.trim().parse().map_err(|_| format!("not an integer: '{}'", text))?;
    outputs[0].set_text((value + 1).to_string());
    Ok(())
}

/// A directory output: one file per line of the input text (line-0, line-1, ...).
fn split_lines(_ctx: &mut Context, inputs: &[Input], outputs: &mut [Output]) -> TaskResult {
    let dir = outputs[0].make_path();
    fs::create_dir(&dir)?;
    for (i, line) in inputs[0].text()?.lines().enumerate() {
        fs::write(dir.join(format!("line-{}", i)), line)?;
    }
    outputs[0].set_path(&dir);
    Ok(())
}

/// A directory input: the sorted names of its entries, one per line.
fn list_dir(_ctx: &mut Context, inputs: &[Input], outputs: &mut [Output]) -> TaskResult {
    if !inputs[0].is_dir() {
        return Err("list_dir needs a directory input".into());
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(inputs[0].path()?)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    outputs[0].set_text(names.iter().map(|n| format!("{}\n", n)).collect::<String>());
    Ok(())
}

fn main() -> ExitCode {
    Executor::new("rustex")
        .task("hello", hello)
        .task("invert", invert)
        .task("repeat", repeat)
        .task("fail", fail)
        .task("throw", panic_task)
        .task("crash", crash)
        .task("pass", pass)
        .task("increment", increment)
        .task("split_lines", split_lines)
        .task("list_dir", list_dir)
        .run()
}
