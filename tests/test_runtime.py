"""The runtime: the CPU's features as logs and reports name them, and the bfloat16 warning."""

import textwrap

from translator.runtime import cpu_features, precision_warning


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
