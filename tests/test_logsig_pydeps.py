"""BWD-LOG-015: Python dependencies missing or at incompatible versions (texts written for these tests)."""

from __future__ import annotations

from bwdoctor.diagnosis import diagnose
from bwdoctor.manager import PluginManager
from bwdoctor_remedies import pystack

from logsig_util import outcome, snap_from

TRACE_MISSING = """\
INFO 03-02 10:00:01 [api_server.py:1400] vLLM API server version 0.22.1
Traceback (most recent call last):
  File "/opt/venv/lib/python3.12/site-packages/vllm/entrypoints/openai/api_server.py", line 12, in <module>
    from vllm.entrypoints.chat_utils import load_chat_template
  File "/opt/venv/lib/python3.12/site-packages/vllm/transformers_utils/tokenizer.py", line 9, in <module>
    import pycountry
ModuleNotFoundError: No module named 'pycountry'
"""

TRACE_API = """\
  File "/opt/venv/lib/python3.12/site-packages/vllm/v1/structured_output/backend_xgrammar.py", line 40, in compile
    ctx = xgr.GrammarCompiler(info)
  File "/opt/venv/lib/python3.12/site-packages/xgrammar/compiler.py", line 88, in __init__
    self._handle = _core.make(tokenizer_info)
  File "/opt/venv/lib/python3.12/site-packages/tvm_ffi/registry.py", line 51, in make
AttributeError: module 'tvm_ffi' has no attribute 'register_object'
"""


def test_missing_module_of_the_stack_names_the_package_and_vllm_pin():
    snap = snap_from(TRACE_MISSING, packages={"vllm": {"version": "0.22.1",
                                                       "requires": ["pycountry==24.6.1", "torch==2.9.0"]}})
    out = outcome("BWD-LOG-015", snap)
    assert out.status == "fail" and out.root_cause == "python_dependency_broken"
    assert out.details["package"] == "pycountry" and out.details["requirement"] == "pycountry==24.6.1"
    assert "pycountry==24.6.1" in out.message and out.confidence >= 0.75


def test_api_mismatch_between_packages_maps_the_import_name_to_its_distribution():
    snap = snap_from(TRACE_API + "ERROR pip: vllm 0.22.1 requires apache-tvm-ffi==0.1.4, but you have apache-tvm-ffi "
                                 "0.1.0 which is incompatible.\n")
    out = outcome("BWD-LOG-015", snap)
    assert out.details["package"] == "apache-tvm-ffi" and out.details["requirement"] == "apache-tvm-ffi==0.1.4"
    assert diagnose([out])[0]["root_cause"] == "python_dependency_broken"


def test_compiled_extension_missing_is_left_to_the_abi_check():
    snap = snap_from("ModuleNotFoundError: No module named 'vllm._C'\n")
    assert outcome("BWD-LOG-015", snap).status == "skip"
    assert outcome("BWD-LOG-005", snap).root_cause == "torch_vllm_abi_mismatch"


def test_type_error_inside_one_package_is_not_a_dependency_problem():
    text = ('  File "/x/site-packages/vllm/engine/a.py", line 1, in f\n'
            '  File "/x/site-packages/vllm/engine/b.py", line 2, in g\n'
            "TypeError: Foo.__init__() got an unexpected keyword argument 'bar'\n")
    assert outcome("BWD-LOG-015", snap_from(text)).status == "skip"


def test_remedy_installs_the_pinned_version():
    snap = snap_from(TRACE_MISSING, packages={"vllm": {"version": "0.22.1", "requires": ["pycountry==24.6.1"]}})
    out = outcome("BWD-LOG-015", snap)
    plan = pystack.install_dependency(out, snap)
    step = plan.steps[0]
    assert step.argv[-1] == "pycountry==24.6.1" and not step.advisory
    reg = PluginManager().registry()
    assert "python.install-dependency" in {r.id for r in reg.remedies}


def test_an_error_asking_for_a_stack_package_names_it():
    out = outcome("BWD-LOG-015", snap_from("ImportError: Please install xgrammar via `pip install xgrammar` to use "
                                           "structured outputs\n"))
    assert out.root_cause == "python_dependency_broken" and out.details["package"] == "xgrammar"
    assert out.confidence >= 0.7
    # the same words in a warning of a healthy log are not a failure
    assert outcome("BWD-LOG-015", snap_from("WARNING please install hf_transfer for faster downloads\n")).status \
        == "skip"


def test_version_requirement_in_an_import_error():
    out = outcome("BWD-LOG-015", snap_from("ImportError: this architecture requires transformers>=4.57.0, found "
                                           "4.51.3\n"))
    assert out.details["requirement"] == "transformers>=4.57.0"
