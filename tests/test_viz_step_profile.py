"""minimamba.viz.step_profile: kernel names sorted into groups, per-group sums, the table and the figure."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pytest

from minimamba.viz import step_profile as sp

matplotlib.use("Agg")

# kernel names of the kinds a CUDA profile of one training step lists, with the group each belongs to
NAMES = {
    "selective_scan_fwd_time_kernel": "selective scan",
    "void selective_scan_bwd_kernel<Selective_Scan_bwd_kernel_traits<128, 16, true>, float>(SSMParamsBwd)": (
        "selective scan"
    ),
    "bc_layouts_kernel": "selective scan",
    "_conv_bwd_kernel": "causal conv1d",
    "void causal_conv1d_fwd_kernel<Causal_conv1d_fwd_kernel_traits<128, 4, true>>(ConvParamsBase)": (
        "causal conv1d"
    ),
    "void at::native::conv_depthwise2d_forward_kernel<1, float, int>(...)": "causal conv1d",
    "_add_rms_norm_bwd_kernel": "add + RMSNorm",
    "_layer_norm_fwd_1pass_kernel": "add + RMSNorm",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1": "matrix products",
    "nvjet_tst_128x256_64x4_2x1_v_bz_coopA_NTN": "matrix products",
    "void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float, Epilogue>": (
        "cross-entropy"
    ),
    "void at::native::nll_loss_forward_reduce_cuda_kernel_2d<float, long>": "cross-entropy",
    "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, ...>": "copies and fills",
    "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda, ...>": "copies and fills",
    "void at::native::vectorized_elementwise_kernel<4, at::native::silu_kernel ...>": sp.OTHER,
    "silu_gate_kernel": sp.OTHER,
    "void at::native::unrolled_elementwise_kernel<ConvertFunctor>": sp.OTHER,  # "convert" is no conv
}


@pytest.mark.parametrize("name", NAMES)
def test_group_of_real_kernel_names(name):
    assert sp.group_of(name) == NAMES[name]


def _doc():
    kernels_a = [{"name": n, "count": 1, "device_us": 1000.0 * (i + 1)} for i, n in enumerate(NAMES)]
    kernels_b = [{"name": "selective_scan_fwd_kernel", "count": 24, "device_us": 2500.0}]
    return {
        "results": {
            "fused": {"step_ms": 200.0, "peak_memory_gib": 3.5, "kernels": kernels_a},
            "mamba_ssm": {"step_ms": 4.0, "peak_memory_gib": 1.25, "kernels": kernels_b},
        }
    }


def test_group_times_add_up_each_groups_kernels():
    kernels = _doc()["results"]["fused"]["kernels"]
    got = sp.group_times(kernels)
    assert list(got) == [g for g, _ in sp.GROUPS] + [sp.OTHER]
    for group in got:  # independent sum: straight from the table of names above
        want = sum(k["device_us"] for k in kernels if NAMES[k["name"]] == group) / 1e3
        assert got[group] == pytest.approx(want)
    assert sum(got.values()) == pytest.approx(sum(k["device_us"] for k in kernels) / 1e3)


def test_profile_table_and_plot():
    doc = _doc()
    table = sp.profile_table(doc).splitlines()
    assert table[0].split() == ["ms", "per", "step", "fused", "mamba_ssm"]
    scan = next(line for line in table if line.startswith("selective scan")).split()
    assert scan[-2:] == [f"{sp.group_times(doc['results']['fused']['kernels'])['selective scan']:.1f}", "2.5"]
    assert table[-1].split()[-2:] == ["3.50", "1.25"] and table[-2].split()[-2:] == ["200.0", "4.0"]
    fig = sp.plot_profile(doc, title="t")
    ax = fig.axes[0]
    bars = ax.patches  # one bar per (path, group), the paths bottom-up in reverse order
    per_path = len(sp.GROUPS) + 1
    mamba_ssm = [b.get_width() for b in bars[:per_path]]
    assert mamba_ssm == pytest.approx(list(sp.group_times(doc["results"]["mamba_ssm"]["kernels"]).values()))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mamba_ssm", "fused"]
    plt.close(fig)


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="name must be"):
        sp.group_of(3)
    with pytest.raises(TypeError, match="kernels must be a list"):
        sp.group_times("k")
    with pytest.raises(ValueError, match="'name' and 'device_us'"):
        sp.group_times([{"name": "x"}])
    with pytest.raises(ValueError, match="profile_training.py"):
        sp.profile_table({})
    with pytest.raises(ValueError, match="no GPU kernels for \\['fused'\\]"):
        sp.profile_table({"results": {"fused": {"step_ms": 1.0, "kernels": []}}})


def test_profile_table_columns_fit_long_path_names():
    """A path name longer than the default column (``fused-recompute``) stays apart from its neighbour."""
    doc = _doc()
    doc["results"] = {"fused-recompute-long": doc["results"]["fused"], **doc["results"]}
    header = sp.profile_table(doc).splitlines()[0].split()
    assert header[3:] == ["fused-recompute-long", "fused", "mamba_ssm"]
