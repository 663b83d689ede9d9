//! Rain tasks in Rust: the executor side of Rain's executor protocol (`rain-executor/1`).
//!
//! A program built with this crate is an *executor*: a governor starts it, sends it tasks
//! of type `NAME/METHOD` and reuses it task after task. Register it in the governor's TOML
//! config (`[executors.NAME] command = "/path/to/program"`) and create its tasks from
//! Python with `Task(inputs, outputs, task_type="NAME/METHOD", config={...})`.
//!
//! ```no_run
//! use rain_task::Executor;
//!
//! fn main() -> std::process::ExitCode {
//!     Executor::new("rustex")
//!         .task("hello", |_ctx, inputs, outputs| {
//!             let name = inputs[0].text()?;
//!             outputs[0].set_text(format!("Hello {}!", name));
//!             Ok(())
//!         })
//!         .run()
//! }
//! ```
//!
//! A task fails with a message when its function returns an error (`Err("why".into())`,
//! or any error through `?`) or panics; the executor stays up for later tasks. If the
//! process dies instead, the governor fails the task with the tail of its stderr.

mod protocol;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use serde_cbor::Value;

pub use protocol::Executor;

/// What a task function returns: `Ok(())`, or an error whose message fails the task.
pub type TaskResult = Result<(), Box<dyn std::error::Error>>;

/// The global id of a task or data object: `(session, id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub session: u64,
    pub id: u64,
}

/// Directory (in the executor's working directory) of outputs handed to the governor.
pub(crate) const OUTPUT_DIR: &str = ".rain-outputs";
/// Directory of memory inputs written out by [`Input::path`].
pub(crate) const INPUT_DIR: &str = ".rain-inputs";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other call of this process uses, in `dir`.
pub(crate) fn unique_path(dir: &Path, stem: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    dir.join(format!("{}-{}-{}", stem, std::process::id(), n))
}

/// Where an input's data is.
#[derive(Debug)]
pub(crate) enum InputData {
    Memory(Vec<u8>),
    Path(PathBuf),
}

/// One input of a task: a blob (bytes) or a directory, in memory or in a file of the
/// governor's store. Input files are read-only: never modify, move or delete them.
#[derive(Debug)]
pub struct Input {
    pub(crate) id: Id,
    pub(crate) label: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) is_dir: bool,
    pub(crate) size: Option<u64>,
    pub(crate) data: InputData,
    pub(crate) written: RefCell<Option<PathBuf>>,
    pub(crate) workdir: PathBuf,
}

impl Input {
    pub fn id(&self) -> Id {
        self.id
    }
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }
    /// The content type of the data (`"text"`, `"json"`, ...), if known.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }
    /// Whether the data came in the message rather than as a file.
    pub fn in_memory(&self) -> bool {
        matches!(self.data, InputData::Memory(_))
    }
    /// The size in bytes as the governor gave it.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
    /// The bytes of a blob (read from its file when it came as a path).
    pub fn bytes(&self) -> Result<Cow<'_, [u8]>, Box<dyn std::error::Error>> {
        match &self.data {
            InputData::Memory(data) => Ok(Cow::Borrowed(data)),
            InputData::Path(_) if self.is_dir => {
                Err(format!("input {} is a directory; use path()", self.describe()).into())
            }
            InputData::Path(path) => fs::read(path)
                .map(Cow::Owned)
                .map_err(|e| format!("cannot read {}: {}", path.display(), e).into()),
        }
    }
    /// The blob as UTF-8 text.
    pub fn text(&self) -> Result<String, Box<dyn std::error::Error>> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.into_owned())
            .map_err(|_| format!("input {} is not UTF-8 text", self.describe()).into())
    }
    /// A path to read: the store's file or directory, or (for data that came in memory)
    /// a file written in the working directory on first use.
    pub fn path(&self) -> Result<PathBuf, Box<dyn std::error::Error>> {
        match &self.data {
            InputData::Path(path) => Ok(path.clone()),
            InputData::Memory(data) => {
                let mut written = self.written.borrow_mut();
                if let Some(path) = written.as_ref() {
                    return Ok(path.clone());
                }
                let path = unique_path(&self.workdir.join(INPUT_DIR), "in");
                fs::write(&path, data)
                    .map_err(|e| format!("cannot write {}: {}", path.display(), e))?;
                *written = Some(path.clone());
                Ok(path)
            }
        }
    }
    fn describe(&self) -> String {
        match &self.label {
            Some(label) => format!("'{}'", label),
            None => format!("{}/{}", self.id.session, self.id.id),
        }
    }
}

/// What a task made for one output.
#[derive(Debug)]
pub(crate) enum OutputData {
    Unset,
    Memory(Vec<u8>),
    Path(PathBuf),
    Input(Id),
}

/// One output of a task. A task sets every output exactly once with one of the `set_*`
/// methods; an output left unset fails the task.
#[derive(Debug)]
pub struct Output {
    pub(crate) id: Id,
    pub(crate) label: Option<String>,
    pub(crate) declared: Option<String>,
    pub(crate) is_dir: bool,
    pub(crate) data: OutputData,
    pub(crate) content_type: Option<String>,
    pub(crate) workdir: PathBuf,
}

impl Output {
    pub fn id(&self) -> Id {
        self.id
    }
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }
    /// Whether the graph wants a directory here (else a blob).
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }
    /// The content type declared by the graph.
    pub fn declared_content_type(&self) -> Option<&str> {
        self.declared.as_deref()
    }
    /// A blob in memory.
    pub fn set_bytes(&mut self, data: impl Into<Vec<u8>>) {
        self.data = OutputData::Memory(data.into());
    }
    /// A text blob (content type `text` unless set otherwise).
    pub fn set_text(&mut self, text: impl Into<String>) {
        self.data = OutputData::Memory(text.into().into_bytes());
        if self.content_type.is_none() {
            self.content_type = Some("text".into());
        }
    }
    /// A file (blob output) or directory (directory output) the task wrote. Ownership
    /// passes to the governor, which moves it into its store: do not touch it afterwards.
    pub fn set_path(&mut self, path: impl AsRef<Path>) {
        self.data = OutputData::Path(self.workdir.join(path.as_ref()));
    }
    /// The same data as one of this task's inputs (no copy is made here).
    pub fn set_input(&mut self, input: &Input) {
        self.data = OutputData::Input(input.id);
    }
    /// The content type of the data (a sub-type of the declared one).
    pub fn set_content_type(&mut self, content_type: impl Into<String>) {
        self.content_type = Some(content_type.into());
    }
    /// A fresh, unused path in the working directory to write this output to (a file or
    /// a directory); then pass it to [`Output::set_path`].
    pub fn make_path(&self) -> PathBuf {
        unique_path(&self.workdir.join(OUTPUT_DIR), "out")
    }
}

/// What a task function knows about its task, and its ways to report back.
#[derive(Debug)]
pub struct Context {
    pub(crate) task_id: Id,
    pub(crate) task_type: String,
    pub(crate) method: String,
    pub(crate) name: Option<String>,
    pub(crate) config_bytes: Vec<u8>,
    pub(crate) config: Value,
    pub(crate) attributes: Value,
    pub(crate) resources: BTreeMap<String, Value>,
    pub(crate) debug: String,
    pub(crate) user: BTreeMap<Value, Value>,
}

impl Context {
    pub fn task_id(&self) -> Id {
        self.task_id
    }
    /// The full task type, e.g. `"rustex/hello"`.
    pub fn task_type(&self) -> &str {
        &self.task_type
    }
    /// The part after the first `/`, e.g. `"hello"`.
    pub fn method(&self) -> &str {
        &self.method
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The task's config, decoded from CBOR (`Value::Null` when the task has none).
    pub fn config(&self) -> &Value {
        &self.config
    }
    /// The config's raw CBOR bytes.
    pub fn config_bytes(&self) -> &[u8] {
        &self.config_bytes
    }
    /// The config decoded into your own type (`#[derive(Deserialize)]`).
    pub fn config_as<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<T, Box<dyn std::error::Error>> {
        serde_cbor::value::from_value(self.config.clone())
            .map_err(|e| format!("invalid config for task '{}': {}", self.method, e).into())
    }
    /// A value from the config map, if there.
    pub fn config_get(&self, key: &str) -> Option<&Value> {
        match &self.config {
            Value::Map(map) => map.get(&Value::Text(key.to_string())),
            _ => None,
        }
    }
    /// The client's free-form attributes of the task (`spec.user`, a map).
    pub fn attributes(&self) -> &Value {
        &self.attributes
    }
    /// CPUs given to the task.
    pub fn cpus(&self) -> u64 {
        match self.resources.get("cpus") {
            Some(Value::Integer(n)) if *n >= 0 => *n as u64,
            _ => 1,
        }
    }
    /// A line of the task's debug log, shown with a failure and in `task.info.debug`.
    pub fn debug(&mut self, line: impl AsRef<str>) {
        self.debug.push_str(line.as_ref());
        self.debug.push('\n');
    }
    /// A value returned to the client in `task.info.user[key]`.
    pub fn set_attribute<T: serde::Serialize>(&mut self, key: &str, value: &T) {
        let value = serde_cbor::value::to_value(value).unwrap_or(Value::Null);
        self.user.insert(Value::Text(key.to_string()), value);
    }
}
