// Audio mixing as a matrix product: mixes = gains × sources, then the soft limiter.
// Loaded by mixer/src/gpu_mix.rs.
//
// Layout (all f32, row-major):
// - sources: S rows of N samples (48 kHz mono, full scale ±1.0).
// - gains:   M rows of S gains (one row per distinct mix).
// - mixes:   M rows of N samples (output).
// One invocation computes one output sample: x = sample index, y = mix index.

struct Dims {
    // Number of sources in `sources` and columns of `gains`.
    sources: u32,
    // Samples per source row (one tick).
    samples: u32,
    // Number of mixes (rows of `gains` and `mixes`).
    mixes: u32,
    _pad: u32,
};

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> sources: array<f32>;
@group(0) @binding(2) var<storage, read> gains: array<f32>;
@group(0) @binding(3) var<storage, read_write> mixes: array<f32>;

const KNEE: f32 = 0.9;
const CEILING: f32 = 0.99;

// Must match mcu_mixer::soft_limit.
fn soft_limit(x: f32) -> f32 {
    let a = abs(x);
    if (a <= KNEE) {
        return x;
    }
    return sign(x) * (KNEE + (CEILING - KNEE) * tanh((a - KNEE) / (CEILING - KNEE)));
}

@compute @workgroup_size(64)
fn mix_rows(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = id.x;
    let m = id.y;
    if (n >= dims.samples || m >= dims.mixes) {
        return;
    }
    var acc = 0.0;
    for (var s = 0u; s < dims.sources; s = s + 1u) {
        acc = acc + gains[m * dims.sources + s] * sources[s * dims.samples + n];
    }
    mixes[m * dims.samples + n] = soft_limit(acc);
}
