//! The connection to the governor: frames, `register`, and one `call` -> one `result`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::{
    unique_path, Context, Id, Input, InputData, Output, OutputData, TaskResult, Value,
    INPUT_DIR, OUTPUT_DIR,
};

const PROTOCOL: &str = "rain-executor/1";

type TaskFn = Box<dyn Fn(&mut Context, &[Input], &mut [Output]) -> TaskResult>;

/// The executor: register task functions by method name, then [`Executor::run`] serves
/// the governor until it goes away. Tasks run one at a time, in the order they arrive.
pub struct Executor {
    name: String,
    tasks: HashMap<String, TaskFn>,
    workdir: PathBuf,
}

fn text(v: &str) -> Value {
    Value::Text(v.to_string())
}

fn get<'a>(map: &'a Value, key: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    match map {
        Value::Map(m) => m.get(&text(key)).unwrap_or(&NULL),
        _ => &NULL,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        _ => None,
    }
}

fn as_id(v: &Value) -> Result<Id, String> {
    match v {
        Value::Array(items) if items.len() == 2 => match (&items[0], &items[1]) {
            (Value::Integer(s), Value::Integer(i)) => Ok(Id { session: *s as u64, id: *i as u64 }),
            _ => Err(format!("invalid id {:?}", v)),
        },
        _ => Err(format!("invalid id {:?}", v)),
    }
}

fn id_value(id: Id) -> Value {
    Value::Array(vec![Value::Integer(id.session as i128), Value::Integer(id.id as i128)])
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

fn write_frame(stream: &mut UnixStream, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

/// The next frame, or None at end of file (the governor is gone).
fn read_frame(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 4];
    if let Err(e) = stream.read_exact(&mut head) {
        return if e.kind() == io::ErrorKind::UnexpectedEof { Ok(None) } else { Err(e) };
    }
    let mut payload = vec![0u8; u32::from_le_bytes(head) as usize];
    match stream.read_exact(&mut payload) {
        Ok(()) => Ok(Some(payload)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without message".to_string()
    }
}

/// Hand an output path over under a name no later call uses: calls may be queued, and
/// the governor moves the path only when it reads the result.
fn hand_over(workdir: &Path, path: &Path) -> PathBuf {
    let outputs = workdir.join(OUTPUT_DIR);
    if path.starts_with(&outputs) {
        return path.to_path_buf();
    }
    let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let target = unique_path(&outputs, stem);
    match fs::rename(path, &target) {
        Ok(()) => target,
        Err(_) => path.to_path_buf(), // another file system: the governor copies it
    }
}

impl Executor {
    /// An executor called `name` (the name used in the governor config).
    pub fn new(name: &str) -> Executor {
        Executor {
            name: name.to_string(),
            tasks: HashMap::new(),
            workdir: PathBuf::from("."),
        }
    }

    /// `function` runs tasks of type `NAME/method`.
    pub fn task<F>(mut self, method: &str, function: F) -> Executor
    where
        F: Fn(&mut Context, &[Input], &mut [Output]) -> TaskResult + 'static,
    {
        self.tasks.insert(method.to_string(), Box::new(function));
        self
    }

    /// Connects to the governor (from the `RAIN_EXECUTOR_*` environment) and serves tasks.
    /// Returns success when the governor closes the connection; failure (after printing
    /// why to stderr) when the program was not started by a governor or the connection
    /// broke.
    pub fn run(mut self) -> ExitCode {
        match self.serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{}: {}", self.name, message);
                ExitCode::FAILURE
            }
        }
    }

    fn serve(&mut self) -> Result<(), String> {
        let var = |name: &str| std::env::var(name).ok();
        let (socket, id, kind) = match (
            var("RAIN_EXECUTOR_SOCKET"),
            var("RAIN_EXECUTOR_ID"),
            var("RAIN_EXECUTOR_TYPE"),
        ) {
            (Some(s), Some(i), Some(t)) => (s, i, t),
            _ => {
                return Err(format!(
                    "this program is a Rain executor; a governor starts it. Register it in \
                     the governor's config:\n  [executors.{}]\n  command = \"...\"",
                    self.name
                ))
            }
        };
        let id: u64 = id.parse().map_err(|_| format!("invalid RAIN_EXECUTOR_ID {:?}", id))?;
        self.workdir = std::env::current_dir().map_err(|e| e.to_string())?;
        for dir in [OUTPUT_DIR, INPUT_DIR] {
            let _ = fs::create_dir_all(self.workdir.join(dir));
        }
        let mut stream =
            UnixStream::connect(&socket).map_err(|e| format!("cannot connect to {}: {}", socket, e))?;
        let register = map(vec![
            ("protocol", text(PROTOCOL)),
            ("executor_id", Value::Integer(id as i128)),
            ("executor_type", Value::Text(kind)),
            ("pipeline", Value::Bool(true)),
        ]);
        let payload = serde_cbor::to_vec(&Value::Array(vec![text("register"), register]))
            .map_err(|e| e.to_string())?;
        write_frame(&mut stream, &payload).map_err(|e| format!("cannot register: {}", e))?;
        loop {
            let frame = match read_frame(&mut stream).map_err(|e| e.to_string())? {
                Some(frame) => frame,
                None => return Ok(()), // the governor is gone
            };
            let message: Value = serde_cbor::from_slice(&frame)
                .map_err(|e| format!("undecodable message: {}", e))?;
            let (kind, body) = match message {
                Value::Array(mut items) if items.len() == 2 => {
                    let body = items.pop().unwrap();
                    (items.pop().unwrap(), body)
                }
                _ => return Err("malformed message".into()),
            };
            if kind != text("call") {
                continue; // drop_cached (nothing is cached here) and future hints
            }
            let result = self.call(&body);
            let payload = serde_cbor::to_vec(&Value::Array(vec![text("result"), result]))
                .map_err(|e| e.to_string())?;
            if write_frame(&mut stream, &payload).is_err() {
                return Ok(()); // the governor is gone
            }
        }
    }

    fn read_inputs(&self, items: &Value) -> Result<Vec<Input>, String> {
        let items = match items {
            Value::Array(items) => items,
            _ => return Err("the call has no inputs array".into()),
        };
        let mut inputs = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let location = match get(item, "location") {
                Value::Array(location) => location.as_slice(),
                _ => &[],
            };
            let data = match location {
                [Value::Text(kind), Value::Bytes(data)] if kind == "memory" => {
                    InputData::Memory(data.clone())
                }
                [Value::Text(kind), Value::Text(path)] if kind == "path" => {
                    InputData::Path(PathBuf::from(path))
                }
                _ => {
                    return Err(format!(
                        "input {} came as {:?}, which this executor does not keep",
                        index, location
                    ))
                }
            };
            inputs.push(Input {
                id: as_id(get(item, "id"))?,
                label: as_text(get(item, "label")),
                content_type: as_text(get(item, "content_type")),
                is_dir: as_text(get(item, "data_type")).as_deref() == Some("dir"),
                size: match get(item, "size") {
                    Value::Integer(n) if *n >= 0 => Some(*n as u64),
                    _ => None,
                },
                data,
                written: Default::default(),
                workdir: self.workdir.clone(),
            });
        }
        Ok(inputs)
    }

    fn read_outputs(&self, items: &Value) -> Result<Vec<Output>, String> {
        let items = match items {
            Value::Array(items) => items,
            _ => return Err("the call has no outputs array".into()),
        };
        items
            .iter()
            .map(|item| {
                Ok(Output {
                    id: as_id(get(item, "id"))?,
                    label: as_text(get(item, "label")),
                    declared: as_text(get(item, "content_type")),
                    is_dir: as_text(get(item, "data_type")).as_deref() == Some("dir"),
                    data: OutputData::Unset,
                    content_type: None,
                    workdir: self.workdir.clone(),
                })
            })
            .collect()
    }

    fn context(&self, task: &Value) -> Result<Context, String> {
        let config_bytes = match get(task, "config") {
            Value::Bytes(b) => b.clone(),
            _ => Vec::new(),
        };
        let config = if config_bytes.is_empty() {
            Value::Null
        } else {
            serde_cbor::from_slice(&config_bytes)
                .map_err(|e| format!("the task's config is not CBOR: {}", e))?
        };
        let resources = match get(task, "resources") {
            Value::Map(m) => m
                .iter()
                .filter_map(|(k, v)| as_text(k).map(|k| (k, v.clone())))
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(Context {
            task_id: as_id(get(task, "id"))?,
            task_type: as_text(get(task, "type")).unwrap_or_default(),
            method: as_text(get(task, "method")).unwrap_or_default(),
            name: as_text(get(task, "name")),
            config_bytes,
            config,
            attributes: get(task, "user").clone(),
            resources,
            debug: String::new(),
            user: BTreeMap::new(),
        })
    }

    /// Runs one call; the body of its result.
    fn call(&self, body: &Value) -> Value {
        let start_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let clock = Instant::now();
        let mut ctx = None;
        let mut inputs = Vec::new();
        let outcome = self.run_call(body, &mut ctx, &mut inputs);
        for input in &inputs {
            if let Some(path) = input.written.borrow_mut().take() {
                let _ = fs::remove_file(path);
            }
        }
        let mut info = BTreeMap::new();
        if let Some(ctx) = &ctx {
            if !ctx.debug.is_empty() {
                info.insert(text("debug"), Value::Text(ctx.debug.clone()));
            }
            if !ctx.user.is_empty() {
                info.insert(text("user"), Value::Map(ctx.user.clone()));
            }
        }
        let mut result = vec![];
        match outcome {
            Ok(outputs) => {
                let items = outputs.into_iter().map(|out| self.output_item(out)).collect();
                result.push(("success", Value::Bool(true)));
                result.push(("outputs", Value::Array(items)));
            }
            Err(error) => {
                info.insert(text("error"), Value::Text(error));
                result.push(("success", Value::Bool(false)));
            }
        }
        result.push(("info", Value::Map(info)));
        result.push(("start_time", Value::Float(start_time)));
        result.push(("duration", Value::Float(clock.elapsed().as_secs_f64())));
        map(result)
    }

    fn run_call(
        &self,
        body: &Value,
        ctx_slot: &mut Option<Context>,
        inputs_slot: &mut Vec<Input>,
    ) -> Result<Vec<Output>, String> {
        let ctx = ctx_slot.insert(self.context(get(body, "task"))?);
        *inputs_slot = self.read_inputs(get(body, "inputs"))?;
        let mut outputs = self.read_outputs(get(body, "outputs"))?;
        let function = self.tasks.get(&ctx.method).ok_or_else(|| {
            let mut known: Vec<&str> = self.tasks.keys().map(|k| k.as_str()).collect();
            known.sort_unstable();
            format!(
                "executor '{}' has no task '{}' (it has: {})",
                self.name,
                ctx.method,
                known.join(", ")
            )
        })?;
        let inputs: &[Input] = inputs_slot;
        let method = ctx.method.clone();
        match panic::catch_unwind(AssertUnwindSafe(|| function(ctx, inputs, &mut outputs))) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error.to_string()),
            Err(payload) => {
                return Err(format!("task '{}' panicked: {}", method, panic_message(&*payload)))
            }
        }
        for (index, out) in outputs.iter().enumerate() {
            if let OutputData::Unset = out.data {
                let label = out.label.as_ref().map(|l| format!(" ('{}')", l)).unwrap_or_default();
                return Err(format!("task '{}' did not set output {}{}", method, index, label));
            }
        }
        Ok(outputs)
    }

    fn output_item(&self, out: Output) -> Value {
        let location = match out.data {
            OutputData::Memory(data) => vec![text("memory"), Value::Bytes(data)],
            OutputData::Path(path) => {
                let path = hand_over(&self.workdir, &path);
                vec![text("path"), Value::Text(path.to_string_lossy().into_owned())]
            }
            OutputData::Input(id) => vec![text("other"), id_value(id)],
            OutputData::Unset => unreachable!("checked in run_call"),
        };
        let mut item = vec![("location", Value::Array(location))];
        if let Some(content_type) = out.content_type {
            item.push(("content_type", Value::Text(content_type)));
        }
        map(item)
    }
}
