"""The runtime: the CPU's features as logs and reports name them, and the bfloat16 warning."""

import textwrap

from translator.runtime import choose_precision, cpu_features, precision_warning


def test_cpu_features_name_the_model_and_vector_extensions():
    cpuinfo = textwrap.dedent("""\
        processor\t: 0
        model name\t: AMD EPYC 9R14
        flags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw avx512_bf16 amx_bf16 sha_ni
        processor\t: 1
        model name\t: AMD EPYC 9R14
        flags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw avx512_bf16 sha_ni
        """)
    assert cpu_features(cpuinfo) == {
        "cpu_model": "AMD EPYC 9R14",
        "vector_extensions": [
            "amx_bf16",
            "avx",
            "avx2",
            "avx512_bf16",
            "avx512bw",
            "avx512f",
            "fma",
        ],
    }
    assert cpu_features("processor\t: 0\n") == {"cpu_model": "unknown", "vector_extensions": []}


def test_bfloat16_on_a_cpu_without_bfloat16_instructions_is_warned_about():
    avx2 = {"cpu_model": "AMD EPYC 7B13", "vector_extensions": ["avx", "avx2", "fma"]}
    native = {"cpu_model": "AMD EPYC 9R14", "vector_extensions": ["avx2", "avx512_bf16", "avx512f"]}
    amx = {"cpu_model": "Intel Xeon", "vector_extensions": ["amx_bf16", "amx_tile", "avx512f"]}
    warning = precision_warning("mixed_bfloat16", avx2, gpus=0)
    assert "without avx512_bf16 or amx_bf16" in warning and "train.precision=float32" in warning
    assert precision_warning("mixed_bfloat16", native, gpus=0) is None
    assert precision_warning("mixed_bfloat16", amx, gpus=0) is None
    assert precision_warning("mixed_bfloat16", avx2, gpus=1) is None  # the GPU computes
    assert precision_warning("float32", avx2, gpus=0) is None
    assert precision_warning("mixed_bfloat16", {}, gpus=0) is None  # nothing known of the CPU


def test_auto_precision_is_bfloat16_only_where_the_hardware_computes_it():
    avx2 = {"cpu_model": "x", "vector_extensions": ["avx", "avx2", "fma"]}
    avx512 = {"cpu_model": "x", "vector_extensions": ["avx2", "avx512f", "avx512bw"]}
    native = {"cpu_model": "x", "vector_extensions": ["avx2", "avx512_bf16", "avx512f"]}
    amx = {"cpu_model": "x", "vector_extensions": ["amx_bf16", "amx_tile", "avx2"]}
    assert choose_precision("auto", avx2, [])[0] == "float32"
    assert choose_precision("auto", avx512, [])[0] == "float32"  # AVX-512 alone emulates it
    assert choose_precision("auto", {}, [])[0] == "float32"  # nothing known of the CPU
    policy, why = choose_precision("auto", native, [])
    assert policy == "mixed_bfloat16" and "avx512_bf16" in why
    assert choose_precision("auto", amx, []) == (
        "mixed_bfloat16", "auto: the CPU computes bfloat16 natively (amx_bf16)"
    )  # fmt: skip
    assert choose_precision("auto", avx2, [(8, 0), (9, 0)])[0] == "mixed_bfloat16"
    assert choose_precision("auto", native, [(7, 5)])[0] == "float32"  # the GPU computes
    assert choose_precision("mixed_float16", avx2, []) == ("mixed_float16", "as configured")


def test_the_device_line_says_which_precision_auto_chose_and_why(monkeypatch, caplog):
    from omegaconf import OmegaConf

    from translator import runtime

    monkeypatch.setattr(
        runtime, "cpu_features", lambda: {"cpu_model": "Test CPU", "vector_extensions": ["avx2"]}
    )
    train = OmegaConf.create(
        {"threads": None, "precision": "auto", "distribution": "none", "jit_compile": False}
    )
    with caplog.at_level("INFO", logger="translator.runtime"):
        runtime.start_runtime(train, seed=0)
    line = next(r.message for r in caplog.records if r.message.startswith("devices:"))
    assert "precision float32 (auto: the CPU has no bfloat16 instructions" in line
    assert "CPU: Test CPU, avx2" in line
