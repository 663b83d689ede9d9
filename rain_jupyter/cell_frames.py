"""Frames of a remote traceback that ran code of notebook cells, shown as IPython shows
its own: ``Cell In [7], line 6, in parse`` with the source line, which the remote side
(a governor's executor, with the function's code but not the notebook) could not read."""
import linecache
import re
import types

_FRAME = re.compile(r'^(\s*)File "([^"]+)", line (\d+), in (\S+)\s*$')
_LOCATION = re.compile(r"^(.*):(\d+), in (\S+)$")


def _cell_label(shell, filename):
    """``In [7]`` for the file name IPython gave a cell's code (None for other files)."""
    try:
        label = shell.compile.format_code_name(filename)
    except Exception:
        label = None
    return None if label is None else label[1].replace("In[", "In [")


def _user_codes(shell):
    """Code objects of the functions in the user's namespace (``@remote`` ones included)
    and of the functions nested in them, by name."""
    codes = {}

    def add(code):
        codes.setdefault(code.co_name, []).append(code)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add(const)

    for value in list(shell.user_ns.values()):
        function = getattr(value, "fn", value)
        code = getattr(function, "__code__", None)
        if isinstance(code, types.CodeType):
            add(code)
    return codes


def _code_at(codes, name, line):
    """The code object named ``name`` whose lines include ``line`` (pickled functions
    lose their file name, not their line numbers)."""
    best = None
    for code in codes.get(name, ()):
        lines = [number for _start, _end, number in code.co_lines() if number is not None]
        if lines and min(lines + [code.co_firstlineno]) <= line <= max(lines) and (
                best is None or code.co_firstlineno > best.co_firstlineno):
            best = code
    return best


def point_at_cells(shell, body):
    """The remote traceback with frames of code from notebook cells shown as IPython shows
    them (``Cell In [7], line 6, in parse``) followed by their source line, which the
    remote side could not read."""
    codes = None
    out = []
    lines = body.splitlines()
    for index, line in enumerate(lines):
        match = _FRAME.match(line)
        if not match:
            out.append(line)
            continue
        indent, filename, number, function = match.groups()
        number = int(number)
        if filename.startswith("<"):
            if codes is None:
                codes = _user_codes(shell)
            code = _code_at(codes, function, number)
            if code is not None:
                filename = code.co_filename
        label = _cell_label(shell, filename)
        if label is None:
            out.append(line)
            continue
        out.append(f"{indent}Cell {label}, line {number}, in {function}")
        following = lines[index + 1] if index + 1 < len(lines) else ""
        source = linecache.getline(filename, number).strip()
        if source and not following.startswith(indent + "    "):
            out.append(f"{indent}    {source}")
    return "\n".join(out)


def point_at_cell(shell, created):
    """``In [7], line 6`` for a "created at" location in a notebook cell."""
    match = _LOCATION.match(created or "")
    if not match:
        return created
    label = _cell_label(shell, match.group(1))
    if label is None:
        return created
    return f"{label}, line {match.group(2)}"


def point_at_cells_of_kernel(message):
    """``point_at_cells`` for the running IPython kernel, if any (else the message)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return message
    shell = get_ipython()
    return message if shell is None or not message else point_at_cells(shell, message)
