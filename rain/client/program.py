"""External programs as tasks: ``Execute`` (one task) and ``Program`` (a template).

Data objects on the command line become files in the task's fresh working directory
(named after their label, made unique), ``Output``s become files the program writes.
"""
import re
import shlex

from ..common.errors import RainException
from ..common.ids import DataType
from .data import DataObject
from .input import Input, InputDir
from .output import Output, OutputDir
from .task import Task, retry_policy

STDIN_PATH = "+in"
STDOUT_PATH = "+out"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: A Program call's ``retries`` when not given: the Program's own (None means the
#: server's default, so it cannot stand for "not given").
_UNSET = object()


class _Builder:
    """Collects the inputs, outputs and paths of one external-program task."""

    def __init__(self):
        self.inputs = []       # (label, DataObject)
        self.in_paths = []     # {"path", "write"}
        self.outputs = []      # Output
        self.out_paths = []
        self.used = set()           # input file names
        self.output_used = set()    # output file names (an input's name is allowed)
        self.counter = 0

    def _unique(self, base):
        base = _SAFE.sub("_", base or "input").strip("._") or "input"
        name = base
        while name in self.used or name in self.output_used:
            self.counter += 1
            name = f"{base}_{self.counter}"
        self.used.add(name)
        return name

    def _claim(self, path):
        if path in self.used:
            raise RainException(f"Execute: the file name {path!r} is used twice")
        self.used.add(path)
        return path

    def add_input(self, item, named=True):
        if isinstance(item, Input):
            if item.dataobj is None:
                raise RainException(f"{item!r} has no data object bound to it")
            obj = item.dataobj
            label = item.label or obj.label
            path = self._claim(item.path) if item.path else self._unique(label)
            write = item.write
        else:
            from .data import to_dataobj
            obj = to_dataobj(item)
            label = obj.label
            path = self._unique(label)
            write = False
        self.inputs.append((label, obj))
        self.in_paths.append({"path": path, "write": bool(write)})
        return path

    def add_output(self, item):
        if isinstance(item, str):
            item = Output(item, path=item)
        if not isinstance(item, Output):
            raise RainException(f"Invalid output {item!r}")
        path = item.path or item.label
        if not path:
            raise RainException(f"{item!r} needs a label or a path")
        if path in self.output_used:
            raise RainException(f"Execute: the output file name {path!r} is used twice")
        self.output_used.add(path)
        if item.label is None:
            item = type(item)(path, path=path) if isinstance(item, OutputDir) else \
                Output(path, content_type=item.content_type, path=path)
        self.outputs.append(item)
        self.out_paths.append(path)
        return path


def _arg_text(builder, arg):
    if isinstance(arg, str):
        return arg
    if isinstance(arg, (DataObject, Task, Input)):
        return builder.add_input(arg)
    if isinstance(arg, Output):
        return builder.add_output(arg)
    if isinstance(arg, (int, float)):
        return str(arg)
    raise RainException(f"Execute: invalid argument {arg!r}")


def _build_execute(args, stdout, stdin, input_paths, output_paths, shell, name):
    """Return (inputs, outputs, config, name) of an external-program task."""
    builder = _Builder()
    if isinstance(args, str):
        args = [args] if shell else shlex.split(args)
    else:
        args = list(args)
    if not args:
        raise RainException("Execute needs a program to run")
    texts = [_arg_text(builder, arg) for arg in args]
    for item in input_paths:
        if not isinstance(item, Input) or item.dataobj is None:
            raise RainException(f"input_paths items must be Input(..., dataobj=...), "
                                f"not {item!r}")
        builder.add_input(item)
    for item in output_paths:
        builder.add_output(item)
    if stdin is not None:
        from .data import to_dataobj
        obj = stdin.dataobj if isinstance(stdin, Input) else to_dataobj(stdin)
        builder.inputs.append(("stdin", obj))
        builder.in_paths.append({"path": STDIN_PATH, "write": False})
    if stdout is not None and stdout is not False:
        if stdout is True:
            output = Output("stdout")
        elif isinstance(stdout, str):
            output = Output(stdout)
        elif isinstance(stdout, Output) and not isinstance(stdout, OutputDir):
            output = stdout
        else:
            raise RainException(f"Invalid stdout {stdout!r}")
        builder.outputs.append(output)
        builder.out_paths.append(STDOUT_PATH)
    if shell:
        texts = ["/bin/sh", "-c", " ".join(texts)]
    config = {"args": texts, "in_paths": builder.in_paths, "out_paths": builder.out_paths}
    return builder.inputs, builder.outputs, config, name


class Execute(Task):
    """Run an external program once (see the module doc).

    Unnamed by default, as in Rain 0.4: views that group tasks use the task type then."""

    __slots__ = ()

    def __init__(self, args, stdout=None, stdin=None, input_paths=(), output_paths=(),
                 shell=False, *, cpus=1, name=None, session=None, retries=None,
                 retry_on_error=False):
        inputs, outputs, config, name = _build_execute(args, stdout, stdin, input_paths,
                                                       output_paths, shell, name)
        super().__init__(inputs, outputs, config=config, session=session,
                         task_type="buildin/run", cpus=cpus, name=name, retries=retries,
                         retry_on_error=retry_on_error)


class Program:
    """A reusable external-program template; ``prog(label=obj, ...)`` makes a task."""

    def __init__(self, args, stdout=None, stdin=None, input_paths=(), output_paths=(),
                 shell=False, name=None, cpus=1, retries=None, retry_on_error=False):
        retry_policy(retries, retry_on_error)      # (checked here, used per task)
        self.retries = retries
        self.retry_on_error = retry_on_error
        self.args = [args] if isinstance(args, str) and shell else (
            shlex.split(args) if isinstance(args, str) else list(args))
        self.stdout = stdout
        self.stdin = stdin
        self.input_paths = tuple(input_paths)
        self.output_paths = tuple(output_paths)
        self.shell = shell
        self.name = name
        self.cpus = cpus
        labels = [i.label for i in self._inputs()]
        if any(label is None for label in labels):
            raise RainException("Every Input of a Program needs a label")
        duplicates = {label for label in labels if labels.count(label) > 1}
        if duplicates:
            raise RainException(f"Program inputs with the same label: {sorted(duplicates)}")

    def _inputs(self):
        found = [a for a in self.args if isinstance(a, Input)]
        found.extend(self.input_paths)
        if isinstance(self.stdin, Input):
            found.append(self.stdin)
        elif isinstance(self.stdin, str):
            found.append(Input(self.stdin))
        return found

    @property
    def input_labels(self):
        return [i.label for i in self._inputs()]

    def _with_output(self, item, overrides):
        """``item`` as overridden at instantiation (``prog(label=Output(...))``)."""
        if isinstance(item, str) and item in overrides:
            item = Output(item, path=item)
        if not isinstance(item, Output) or item.label not in overrides:
            return item
        new = overrides.pop(item.label)
        if isinstance(new, str):
            new = Output(new)
        if not isinstance(new, Output):
            raise TypeError(f"Program output {item.label!r} can only be overridden by an "
                            f"Output, not {new!r}")
        kind = type(new)
        if kind is OutputDir:
            return OutputDir(item.label, size_hint=new.size_hint,
                             path=new.path or item.path or item.label)
        return kind(item.label, size_hint=new.size_hint, content_type=new.content_type,
                    encode=new.encode, path=new.path or item.path or item.label)

    def _output_labels(self):
        labels = {a.label for a in self.args if isinstance(a, Output)}
        labels.update(o.label if isinstance(o, Output) else o for o in self.output_paths)
        if isinstance(self.stdout, Output):
            labels.add(self.stdout.label)
        elif self.stdout is True:
            labels.add("stdout")
        elif isinstance(self.stdout, str):
            labels.add(self.stdout)
        labels.discard(None)
        return labels

    def __call__(self, *, session=None, name=None, cpus=None, retries=_UNSET,
                 retry_on_error=None, **objects):
        inputs = set(self.input_labels)
        overrides = {key: objects.pop(key) for key in list(objects)
                     if key not in inputs and key in self._output_labels()}
        expected = inputs
        unknown = set(objects) - expected
        if unknown:
            raise TypeError(f"Program got unexpected input(s): {', '.join(sorted(unknown))}")
        missing = expected - set(objects)
        if missing:
            raise TypeError(f"Program is missing input(s): {', '.join(sorted(missing))}")

        def bind(item):
            if isinstance(item, Input):
                return item.bind(objects[item.label])
            return item

        stdin = self.stdin
        if isinstance(stdin, str):
            stdin = objects[stdin]
        elif isinstance(stdin, Input):
            stdin = objects[stdin.label]
        stdout = self.stdout
        if overrides:
            if stdout is True and "stdout" in overrides:
                stdout = self._with_output(Output("stdout"), overrides)
            elif isinstance(stdout, (str, Output)):
                stdout = self._with_output(stdout if isinstance(stdout, Output)
                                           else Output(stdout), overrides)
        args = [self._with_output(bind(a), overrides) if isinstance(a, Output) else bind(a)
                for a in self.args]
        output_paths = [self._with_output(o, overrides) for o in self.output_paths]
        return Execute(args, stdout=stdout, stdin=stdin,
                            input_paths=[bind(i) for i in self.input_paths],
                            output_paths=output_paths, shell=self.shell,
                            cpus=self.cpus if cpus is None else cpus,
                            name=name or self.name, session=session,
                            retries=self.retries if retries is _UNSET else retries,
                            retry_on_error=self.retry_on_error if retry_on_error is None
                            else retry_on_error)

    def __repr__(self):
        return f"<Program {self.args!r}>"


__all__ = ["Execute", "Program", "Input", "InputDir", "Output", "OutputDir", "DataType"]
