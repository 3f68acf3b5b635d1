"""Plugin discovery and registration (pluggy).

Hooks are called through pluggy: :meth:`PluginManager.registry` walks each hook's
implementations (``pm.hook.<name>.get_hookimpls()``) and calls each plugin's once, isolated.
Failures never escape: a plugin that fails to import, raises in a hook, returns the wrong type,
implements a hook that does not exist (pluggy's ``check_pending``), defines a hook function
without ``@hookimpl`` or declares an id that another plugin already declared is recorded in
:attr:`PluginManager.problems` and becomes an ``error`` finding in the report
(``BWD-CORE-001`` / ``BWD-CORE-002``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import stat
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy
from pluggy import HookImpl

from bwdoctor import hookspecs
from bwdoctor.isolation import CallResult, call_with_deadline, user_interrupted
from bwdoctor.types import CheckSpec, CollectorSpec, ParserSpec, RemedySpec, ReporterSpec

if TYPE_CHECKING:
    import click

ENTRY_POINT_GROUP = "bwdoctor"
PLUGIN_PATH_ENV = "BWDOCTOR_PLUGIN_PATH"
DISABLE_ENV = "BWDOCTOR_DISABLE"
# Third-party plugins (entry points, plugin folders) are imported, and their declaring hooks
# called, with this deadline (seconds): a plugin that hangs there costs one problem, not the run.
TIMEOUT_ENV = "BWDOCTOR_PLUGIN_TIMEOUT"
DEFAULT_PLUGIN_TIMEOUT = 20.0
# The built-in plugins, in registration order (as pytest's ``default_plugins``): every one is
# registered through the same public API and hooks a third-party plugin uses, the host's own
# reporters, commands and checks included. "<role>.<area>" is the plugin's name (what --disable
# takes); the role says which hook the plugin implements (ROLE_HOOKS), so that a command loads only
# the roles it needs. Modules: HOST_PLUGINS for the host's, ``bwdoctor_remedies.<area>`` for
# remedies, ``bwdoctor_checks.<role>.<area>`` for the rest.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "checks.host",
    "reporters.builtin",
    "commands.kb",
    "commands.arch",
    "commands.fit",
    "collectors.host",
    "collectors.nvml",
    "collectors.stack",
    "collectors.vllm_envs",
    "collectors.probes",
    "collectors.smoke",
    "collectors.endpoint",
    "collectors.model",
    "collectors.multigpu",
    "parsers.env",
    "parsers.config",
    "parsers.prose",
    "parsers.log",
    "parsers.model",
    "checks.pkg",
    "checks.gpu",
    "checks.stack",
    "checks.cfg",
    "checks.fp8v",
    "checks.log",
    "checks.probe",
    "checks.smoke",
    "checks.ep",
    "checks.evidence",
    "checks.fit",
    "checks.mgpu",
    "remedies.driver",
    "remedies.runtime",
    "remedies.pystack",
    "remedies.configfiles",
)
# the host's own plugins: its checks (the BWD-CORE findings it emits), reporters and commands
HOST_PLUGINS: dict[str, str] = {
    "checks.host": "bwdoctor.hostchecks",
    "reporters.builtin": "bwdoctor.reporters",
    "commands.kb": "bwdoctor.hostcommands",
}
# the one declaring hook a built-in plugin of each role implements
ROLE_HOOKS: dict[str, str] = {
    "collectors": "bwdoctor_collectors",
    "parsers": "bwdoctor_parsers",
    "checks": "bwdoctor_checks",
    "remedies": "bwdoctor_remedies",
    "reporters": "bwdoctor_reporters",
    "commands": "bwdoctor_cli_commands",
}
ROLES: tuple[str, ...] = tuple(ROLE_HOOKS)
# built-ins that implement the hooks of further roles besides their own (a meta-test keeps this true)
ALSO_IMPLEMENTS: dict[str, tuple[str, ...]] = {}


def plugin_roles(name: str) -> tuple[str, ...]:
    """The roles of the built-in plugin ``name``: the one its name starts with, and any further ones."""
    return (name.split(".", 1)[0], *ALSO_IMPLEMENTS.get(name, ()))


@dataclass
class PluginInfo:
    name: str
    origin: str  # builtin | entry-point | plugin-dir
    distribution: str = ""
    version: str = ""
    location: str = ""
    status: str = "loaded"  # loaded | disabled | failed

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PluginProblem:
    kind: str  # import | hook | duplicate
    plugin: str
    distribution: str
    message: str
    detail: str = ""
    hook: str = ""


@dataclass
class Registry:
    collectors: list[CollectorSpec] = field(default_factory=list)
    parsers: list[ParserSpec] = field(default_factory=list)
    checks: list[CheckSpec] = field(default_factory=list)
    remedies: list[RemedySpec] = field(default_factory=list)
    reporters: list[ReporterSpec] = field(default_factory=list)
    commands: list[click.Command] = field(default_factory=list)


def _plugin_timeout() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, "") or DEFAULT_PLUGIN_TIMEOUT)
    except ValueError:
        return DEFAULT_PLUGIN_TIMEOUT
    return value if value > 0 else DEFAULT_PLUGIN_TIMEOUT


def _guarded(func: Callable[..., Any], args: tuple[Any, ...], third_party: bool) -> CallResult:
    """Call plugin code: third-party code with a deadline in a thread, built-in code inline.
    Every exception (``SystemExit`` and a plugin's own ``KeyboardInterrupt`` included) becomes
    a failed result; only the user's Ctrl-C propagates."""
    if third_party:
        res = call_with_deadline(func, args, _plugin_timeout())
    else:
        try:
            res = CallResult(True, value=func(*args))
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything, even SystemExit
            res = CallResult(False, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(), exception=exc)
    if res.exception is not None and user_interrupted(res.exception):
        raise res.exception
    return res


# the declaring hooks, in the order the registry is built: (hook, registry bucket, kind of item)
_DECLARING: tuple[tuple[str, str, str], ...] = (
    ("bwdoctor_collectors", "collectors", "collector"),
    ("bwdoctor_parsers", "parsers", "parser"),
    ("bwdoctor_checks", "checks", "check"),
    ("bwdoctor_remedies", "remedies", "remedy"),
    ("bwdoctor_reporters", "reporters", "reporter"),
    ("bwdoctor_cli_commands", "commands", "command"),
)
HOOK_NAMES: tuple[str, ...] = tuple(h for h, _, _ in _DECLARING)

# what each declaring hook must return items of
_HOOK_TYPES: dict[str, tuple[type, ...]] = {
    "bwdoctor_collectors": (CollectorSpec,),
    "bwdoctor_parsers": (ParserSpec,),
    "bwdoctor_checks": (CheckSpec,),
    "bwdoctor_remedies": (RemedySpec,),
    "bwdoctor_reporters": (ReporterSpec,),
}


def _split_env(name: str) -> list[str]:
    raw = os.environ.get(name, "")
    return [p.strip() for p in raw.replace(",", " ").split() if p.strip()]


class PluginManager:
    """Finds, registers and calls plugins through pluggy.

    ``roles``: which roles of built-in plugins to load (``None``: all of them); a command asks only
    for what it needs (``bwdoctor list`` needs checks and remedies, never collectors or parsers) and
    :meth:`load_roles` adds more later. Third-party plugins (entry points, plugin folders) are always
    loaded: what they declare is only known once they are imported.
    """

    def __init__(self, disabled: Iterable[str] = (), plugin_dirs: Iterable[str] = (),
                 builtins: bool = True, entry_points: bool = True, roles: Iterable[str] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled) | set(_split_env(DISABLE_ENV))
        # a folder named on the command line is the user's own words: made absolute here; entries of
        # BWDOCTOR_PLUGIN_PATH must be absolute (a relative one would depend on where bwdoctor runs)
        self.plugin_dirs = [os.path.abspath(str(d)) for d in plugin_dirs]
        env_path = os.environ.get(PLUGIN_PATH_ENV, "")
        self.plugin_dirs += [d for d in env_path.split(os.pathsep) if d]
        self.infos: dict[str, PluginInfo] = {}
        self._load_problems: list[PluginProblem] = []
        self._dup_problems: list[PluginProblem] = []
        self._declared: dict[tuple[str, str], list[Any]] = {}  # (plugin, hook) -> valid items it declared
        self._registry: Registry | None = None
        self._builtins = builtins
        self.roles: set[str] = set()
        if builtins:
            self.load_roles(ROLES if roles is None else roles)
        if entry_points:
            self._load_entry_points()
        for d in self.plugin_dirs:
            self._load_dir(d)
        self._check_pending()

    # ------------------------------------------------------------------ public API
    @property
    def problems(self) -> list[PluginProblem]:
        """Every plugin problem so far: failed imports, unknown or failing hooks, duplicate ids."""
        self.registry()
        return self._load_problems + self._dup_problems

    def load_roles(self, roles: Iterable[str]) -> None:
        """Register the built-in plugins of ``roles`` not registered yet."""
        new = set(roles) - self.roles
        if not new or not self._builtins:
            return
        self.roles |= new
        for modname, name in builtin_modules(new):
            self._load_module(modname, PluginInfo(name, "builtin", "bwdoctor", _own_version()))
        self._check_pending()

    def register_module(self, module: ModuleType | Any, name: str, origin: str = "api",
                        distribution: str = "", version: str = "") -> bool:
        """Register an already-imported plugin module or object under ``name``."""
        info = PluginInfo(name, origin, distribution, version, getattr(module, "__file__", "") or "")
        if name in self.disabled:
            info.status = "disabled"
            self.infos[name] = info
            return False
        if name in self.infos and self.infos[name].status == "loaded":
            self._problem("duplicate", name, distribution, f"a plugin named {name!r} is already registered")
            return False
        try:
            self.pm.register(module, name=name)
        except Exception as exc:  # pluggy validation errors (a hook's arguments that its spec lacks)
            info.status = "failed"
            self.infos[name] = info
            self._problem("import", name, distribution, f"plugin {name!r} could not be registered: {exc}")
            return False
        self.infos[name] = info
        self._registry = None
        if origin != "builtin":
            self._undecorated(module, name, distribution)
        return True

    def registry(self) -> Registry:
        """Call every declaring hook of every plugin once, through pluggy's list of hook
        implementations, each call isolated; drop duplicate ids (the first declaration wins)."""
        if self._registry is not None:
            return self._registry
        reg = Registry()
        self._dup_problems = []
        seen: dict[tuple[str, str], str] = {}
        for hook, bucket_name, kind in _DECLARING:
            bucket = getattr(reg, bucket_name)
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                for item in self._declarations(hook, impl):
                    ident = getattr(item, "id", None) or getattr(item, "name", None) or repr(item)
                    key = (kind, str(ident))
                    if key in seen:
                        self._dup_problems.append(PluginProblem(
                            "duplicate", impl.plugin_name, self._dist(impl.plugin_name),
                            f"{kind} id {ident!r} declared by plugin {impl.plugin_name!r} is already declared by "
                            f"plugin {seen[key]!r}; the second declaration is ignored", hook=hook))
                        continue
                    seen[key] = impl.plugin_name
                    bucket.append(item)
        self._registry = reg
        return reg

    def _declarations(self, hook: str, impl: HookImpl) -> list[Any]:
        """What one plugin's implementation of a declaring hook returns (called once, isolated)."""
        name = impl.plugin_name
        cached = self._declared.get((name, hook))
        if cached is not None:
            return cached
        items: list[Any] = []
        self._declared[(name, hook)] = items
        dist = self._dist(name)
        if impl.hookwrapper or impl.wrapper:
            self._problem("hook", name, dist, f"{name}.{hook}() is a hook wrapper; bwdoctor's hooks take none, "
                          f"so it is never called", hook=hook)
            return items
        res = _guarded(lambda f=impl.function: list(f() or []), (), self._third_party(name))
        if not res.ok:
            what = "did not return in time" if res.timed_out else f"raised {res.error}"
            self._problem("hook", name, dist, f"{name}.{hook}() {what}", res.trace, hook=hook)
            return items
        for item in res.value:
            if not self._valid_item(hook, item, name, dist):
                continue
            if hasattr(item, "plugin") and not item.plugin:
                with contextlib.suppress(Exception):
                    item.plugin = name
            items.append(item)
        return items

    def _valid_item(self, hook: str, item: Any, plugin_name: str, dist: str) -> bool:
        if hook == "bwdoctor_cli_commands":
            import click

            ok = isinstance(item, click.Command) and bool(item.name)
            expected = "a named click.Command"
        else:
            ok = isinstance(item, _HOOK_TYPES[hook])
            expected = _HOOK_TYPES[hook][0].__name__
        if not ok:
            self._problem("hook", plugin_name, dist, f"{plugin_name}.{hook}() returned {type(item).__name__} "
                          f"{_short(item)}, expected {expected}; ignored", hook=hook)
        return ok

    def _third_party(self, name: str) -> bool:
        info = self.infos.get(name)
        return info is None or info.origin != "builtin"

    def _dist(self, name: str) -> str:
        info = self.infos.get(name)
        return info.distribution if info else ""

    def _check_pending(self) -> None:
        """pluggy's ``check_pending()``: a hook implementation whose name no hook specification
        has (``bwdoctor_check`` for ``bwdoctor_checks``) is never called. Each such implementation
        becomes one problem naming the plugin and the hook, instead of passing in silence."""
        with contextlib.suppress(pluggy.PluginValidationError):  # it names only the first: all are reported below
            self.pm.check_pending()
            return
        reported = {(p.plugin, p.hook) for p in self._load_problems if p.kind == "hook"}
        for plugin_name, plugin in self.pm.list_name_plugin():
            for caller in self.pm.get_hookcallers(plugin) or []:
                if caller.has_spec() or (plugin_name, caller.name) in reported:
                    continue
                if all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin):
                    continue
                import difflib

                close = difflib.get_close_matches(caller.name, HOOK_NAMES, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f" (the hooks: {', '.join(HOOK_NAMES)})"
                self._problem("hook", plugin_name, self._dist(plugin_name),
                              f"plugin {plugin_name!r} implements {caller.name}(), which is not a bwdoctor hook"
                              f"{hint}; it is never called", hook=caller.name)

    def _undecorated(self, module: Any, name: str, dist: str) -> None:
        """A function named like a hook but without ``@bwdoctor.hookimpl`` is not a hook
        implementation and is never called: say so."""
        for hook in HOOK_NAMES:
            func = getattr(module, hook, None)
            if func is None or not callable(func) or self.pm.parse_hookimpl_opts(module, hook) is not None:
                continue
            self._problem("hook", name, dist, f"plugin {name!r} defines {hook}() without the @bwdoctor.hookimpl "
                          f"decorator; it is never called", hook=hook)

    def plugin_list(self) -> list[dict[str, Any]]:
        return [i.to_dict() for i in sorted(self.infos.values(), key=lambda i: (i.origin != "builtin", i.name))]

    # ------------------------------------------------------------------ loading
    def _problem(self, kind: str, plugin: str, dist: str, message: str, detail: str = "", hook: str = "") -> None:
        self._load_problems.append(PluginProblem(kind, plugin, dist, message, detail, hook))

    def _load_module(self, modname: str, info: PluginInfo) -> None:
        if info.name in self.disabled:
            info.status = "disabled"
            self.infos[info.name] = info
            return
        res = _guarded(importlib.import_module, (modname,), info.origin != "builtin")
        if not res.ok:  # a plugin may even call sys.exit on import
            info.status = "failed"
            self.infos[info.name] = info
            self._problem("import", info.name, info.distribution,
                          f"plugin {info.name!r} (distribution {info.distribution or 'unknown'}) failed to import: "
                          f"{_import_error(res)}", res.trace)
            return
        module = res.value
        self.register_module(module, info.name, info.origin, info.distribution, info.version)
        if info.name in self.infos:
            self.infos[info.name].location = getattr(module, "__file__", "") or ""

    def _load_entry_points(self) -> None:
        if not _may_have_entry_points(ENTRY_POINT_GROUP):
            return
        from importlib.metadata import entry_points

        try:
            eps = entry_points(group=ENTRY_POINT_GROUP)
        except Exception as exc:  # broken metadata on the machine
            self._problem("import", "entry-points", "", f"could not read the {ENTRY_POINT_GROUP!r} entry points: {exc}")
            return
        for ep in eps:
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", "") if dist else ""
            dist_ver = getattr(dist, "version", "") if dist else ""
            info = PluginInfo(ep.name, "entry-point", dist_name or "", dist_ver or "")
            if ep.name in self.disabled:
                info.status = "disabled"
                self.infos[ep.name] = info
                continue
            if ep.name in self.infos:
                self._problem("duplicate", ep.name, dist_name, f"entry point {ep.name!r} of {dist_name} clashes with a "
                              f"plugin already loaded under that name; ignored")
                continue
            res = _guarded(ep.load, (), True)
            if not res.ok:
                info.status = "failed"
                self.infos[ep.name] = info
                self._problem("import", ep.name, dist_name,
                              f"plugin {ep.name!r} (distribution {dist_name or 'unknown'} {dist_ver}) failed to import: "
                              f"{_import_error(res)}", res.trace)
                continue
            self.register_module(res.value, ep.name, "entry-point", dist_name, dist_ver)

    def _load_dir(self, directory: str) -> None:
        if not os.path.isabs(directory):
            self._problem("import", directory, "", f"plugin folder {directory!r} ({PLUGIN_PATH_ENV}) is not an absolute "
                          "path: ignored (a relative one would load whatever the current folder holds)")
            return
        path = Path(directory)
        if not path.is_dir():
            self._problem("import", str(path), "", f"plugin folder {directory!r} does not exist")
            return
        real = Path(os.path.realpath(path))
        problem = untrusted_path(real, is_dir=True)
        if problem:
            self._problem("trust", str(path), "", f"plugin folder {directory!r} is not loaded: {problem}")
            return
        for file in sorted(real.glob("*.py")):
            if file.name.startswith(("_", ".")):  # private and hidden files are not plugins
                continue
            name = file.stem
            problem = untrusted_file(file)
            if problem:
                self._problem("trust", name, f"file {file}", f"plugin file {str(file)!r} is not loaded: {problem}")
                continue
            info = PluginInfo(name, "plugin-dir", f"file {file}", "", str(file))
            if name in self.disabled:
                info.status = "disabled"
                self.infos[name] = info
                continue
            modname = f"bwdoctor_local_plugin_{name}"
            res = _guarded(_exec_file, (modname, file), True)
            if not res.ok:
                sys.modules.pop(modname, None)
                info.status = "failed"
                self.infos[name] = info
                self._problem("import", name, f"file {file}",
                              f"plugin {name!r} ({file}) failed to import: {_import_error(res)}", res.trace)
                continue
            self.register_module(res.value, name, "plugin-dir", f"file {file}", "")


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def untrusted_path(path: Path, is_dir: bool = True) -> str:
    """Why code at ``path`` (already resolved) may have been planted by someone else, or ''.

    Trusted: owned by this user or root and writable by nobody else; every folder above it
    likewise, except that a folder others may write to is fine when it has the sticky bit
    (``/tmp``: others cannot rename or replace what is not theirs)."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})"
    if not _trusted_owner(st.st_uid):
        return f"it belongs to user id {st.st_uid}, neither you nor root"
    if st.st_mode & 0o022:
        return f"others may write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    for parent in path.parents:
        try:
            pst = parent.stat()
        except OSError:
            continue
        if not _trusted_owner(pst.st_uid):
            return f"the folder {str(parent)!r} above it belongs to user id {pst.st_uid}, who may replace it"
        if pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX:
            return f"others may write to the folder {str(parent)!r} above it (mode {stat.S_IMODE(pst.st_mode):04o})"
    return ""


def untrusted_file(file: Path) -> str:
    """Why a plugin file may not be loaded ('' when it may): not a regular file, or not trusted."""
    try:
        lst = file.lstat()
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})"
    target = Path(os.path.realpath(file)) if stat.S_ISLNK(lst.st_mode) else file
    try:
        st = target.stat()
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    return untrusted_path(target, is_dir=False)


def _may_have_entry_points(group: str) -> bool:
    """Whether any installed distribution may declare entry points in ``group``: a look at the
    ``entry_points.txt`` files on ``sys.path``, far cheaper than importing ``importlib.metadata``
    (which is then used to load them). When in doubt (an unreadable folder, a zip), True."""
    header = f"[{group}]"
    for entry in sys.path:
        try:
            if entry and not os.path.isdir(entry or "."):
                if os.path.isfile(entry):  # a zip or egg on the path: let importlib.metadata look
                    return True
                continue
            with os.scandir(entry or ".") as it:
                names = [d.name for d in it if d.name.endswith((".dist-info", ".egg-info"))]
        except OSError:
            return True
        for name in names:
            try:
                with open(os.path.join(entry or ".", name, "entry_points.txt"), encoding="utf-8",
                          errors="replace") as fh:
                    if any(line.strip() == header for line in fh):
                        return True
            except FileNotFoundError:
                continue
            except OSError:
                return True
    return False


def _exec_file(modname: str, file: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(modname, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    return module


def _import_error(res: CallResult) -> str:
    if res.timed_out:
        return f"did not finish importing ({res.error})"
    return res.error


def _short(item: Any, limit: int = 60) -> str:
    try:
        text = repr(item)
    except Exception:  # noqa: BLE001 - a hostile __repr__
        text = "<unprintable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def builtin_module(name: str) -> str:
    """The import name of the built-in plugin ``name`` (nothing is imported here)."""
    if name in HOST_PLUGINS:
        return HOST_PLUGINS[name]
    role, area = name.split(".", 1)
    return f"bwdoctor_remedies.{area}" if role == "remedies" else f"bwdoctor_checks.{role}.{area}"


def builtin_modules(roles: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """``[(import name, plugin name), ...]`` of the built-in plugins, of ``roles`` only when given
    (nothing is imported here)."""
    wanted = None if roles is None else set(roles)
    return [(builtin_module(name), name) for name in DEFAULT_PLUGINS
            if wanted is None or wanted.intersection(plugin_roles(name))]


def _own_version() -> str:
    from bwdoctor import __version__

    return __version__
