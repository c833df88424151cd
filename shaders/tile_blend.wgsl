// Tile blending: draws the tiles of one canvas into one plane of a Y'CbCr 4:2:0 canvas.
// Loaded by compositor/src/render/tile_blend.rs.
//
// One instanced quad per tile; fixed-function alpha blending composites tiles in z order.
// Tiles that are opaque rectangles filled by their picture use the `*_opaque` entry points
// (drawn without blending: a software rasterizer then skips reading the target back).
// The canvas is rendered in two passes: the luma plane (fs_luma) and the chroma plane(s)
// (fs_chroma_planar for I420's separate U and V planes, fs_chroma_interleaved for NV12's UV
// plane). No pixel is ever converted to RGB: blending in Y'CbCr equals blending in R'G'B'.
//
// Coordinate spaces:
// - "canvas px": luma pixels of the output canvas, origin top-left, y down; pixel (i, j) has its
//   centre at (i + 0.5, j + 0.5).
// - "target px": pixels of the plane being rendered (canvas px / plane_scale).
// - "source uv": normalised coordinates of the input's luma plane, (0, 0) top-left.

struct PassUniforms {
    // Size of the render target in target px.
    target_size: vec2<f32>,
    // Canvas px per target px: 1 for the luma pass, 2 for the chroma pass.
    plane_scale: f32,
    _pad: f32,
};

@group(0) @binding(0) var<uniform> pass_u: PassUniforms;
@group(0) @binding(1) var bilinear: sampler;

// The input picture: Y (R8); U (R8, I420) or UV (RG8, NV12); V (R8, I420; unused for NV12).
@group(1) @binding(0) var tex_y: texture_2d<f32>;
@group(1) @binding(1) var tex_u: texture_2d<f32>;
@group(1) @binding(2) var tex_v: texture_2d<f32>;

const FLAG_VIDEO: u32 = 1u;
const FLAG_NV12: u32 = 2u;

struct TileInstance {
    // Tile rectangle, border included: x0, y0, x1, y1 in canvas px.
    @location(0) rect: vec4<f32>,
    // Where the picture goes (letterboxed for "contain"): x0, y0, x1, y1 in canvas px.
    @location(1) content: vec4<f32>,
    // Where the luma plane is sampled: uv = (o_x, o_y) + (k_x, k_y) * canvas px, given as
    // (k_x, o_x, k_y, o_y). Built by DrawTile::sample_map (compositor/src/lib.rs), which the CPU
    // path samples through too.
    @location(2) map_luma: vec4<f32>,
    // Corner radius (canvas px), border width (canvas px), opacity (0..1), flags (FLAG_*).
    @location(3) shape: vec4<f32>,
    // Letterbox/placeholder colour Y, U, V (0..1); w unused.
    @location(4) background: vec4<f32>,
    // Border colour Y, U, V (0..1); w unused.
    @location(5) border_color: vec4<f32>,
    // The chroma plane's map, as map_luma, in the chroma texture's uv.
    @location(6) map_chroma: vec4<f32>,
};

struct VsOut {
    @builtin(position) position: vec4<f32>,
    @location(0) @interpolate(flat) rect: vec4<f32>,
    @location(1) @interpolate(flat) content: vec4<f32>,
    @location(3) @interpolate(flat) shape: vec4<f32>,
    @location(4) @interpolate(flat) background: vec4<f32>,
    @location(5) @interpolate(flat) border_color: vec4<f32>,
    // Texture uv of this fragment in the plane being rendered: the sample map is affine, so
    // interpolating its value at the corners is exact and saves work per fragment. Linear
    // (screen-space) interpolation: every w is 1, and perspective correction would cost a
    // software rasterizer a division per fragment (lavapipe: 5 % of the render).
    @location(6) @interpolate(linear) uv: vec2<f32>,
};

@vertex
fn vs_tile(@builtin(vertex_index) vi: u32, tile: TileInstance) -> VsOut {
    // Triangle strip: (0,0) (1,0) (0,1) (1,1).
    let corner = vec2<f32>(f32(vi & 1u), f32(vi >> 1u));
    let canvas_px = mix(tile.rect.xy, tile.rect.zw, corner);
    let target_px = canvas_px / pass_u.plane_scale;
    let ndc = vec2<f32>(target_px.x / pass_u.target_size.x * 2.0 - 1.0, 1.0 - target_px.y / pass_u.target_size.y * 2.0);
    var out: VsOut;
    out.position = vec4<f32>(ndc, 0.0, 1.0);
    out.rect = tile.rect;
    out.content = tile.content;
    out.shape = tile.shape;
    out.background = tile.background;
    out.border_color = tile.border_color;
    let m = select(tile.map_luma, tile.map_chroma, pass_u.plane_scale > 1.5);
    out.uv = m.yw + m.xz * canvas_px;
    return out;
}

// Signed distance from p to a rounded rectangle (negative inside), all in canvas px.
fn rounded_rect_sdf(p: vec2<f32>, rect: vec4<f32>, radius: f32) -> f32 {
    let half_size = (rect.zw - rect.xy) * 0.5;
    let centre = rect.xy + half_size;
    let r = min(radius, min(half_size.x, half_size.y));
    let q = abs(p - centre) - half_size + vec2<f32>(r, r);
    return length(max(q, vec2<f32>(0.0, 0.0))) + min(max(q.x, q.y), 0.0) - r;
}

// Canvas px of the sample this fragment stands for: the centre of its luma pixel, or the centre
// of the 2x2 luma block of its chroma sample.
fn canvas_position(frag: vec4<f32>) -> vec2<f32> {
    return frag.xy * pass_u.plane_scale;
}

fn inside_content(p: vec2<f32>, tile: VsOut) -> bool {
    let flags = u32(tile.shape.w);
    return (flags & FLAG_VIDEO) != 0u && p.x >= tile.content.x && p.x < tile.content.z && p.y >= tile.content.y && p.y < tile.content.w;
}

// Blends the border over `colour` and returns the final value with its coverage as alpha.
fn finish(p: vec2<f32>, colour: vec3<f32>, tile: VsOut) -> vec4<f32> {
    let radius = tile.shape.x;
    let border = tile.shape.y;
    let opacity = tile.shape.z;
    var c = colour;
    var coverage = 1.0;
    if (radius > 0.0) {
        coverage = clamp(0.5 - rounded_rect_sdf(p, tile.rect, radius), 0.0, 1.0);
    }
    if (border > 0.0) {
        let inner = vec4<f32>(tile.rect.xy + vec2<f32>(border, border), tile.rect.zw - vec2<f32>(border, border));
        let d_inner = rounded_rect_sdf(p, inner, max(radius - border, 0.0));
        c = mix(c, tile.border_color.xyz, clamp(0.5 + d_inner, 0.0, 1.0));
    }
    return vec4<f32>(c, coverage * opacity);
}

@fragment
fn fs_luma(tile: VsOut) -> @location(0) vec4<f32> {
    let p = canvas_position(tile.position);
    var y = tile.background.x;
    if (inside_content(p, tile)) {
        y = textureSampleLevel(tex_y, bilinear, tile.uv, 0.0).r;
    }
    let out = finish(p, vec3<f32>(y, 0.0, 0.0), tile);
    return vec4<f32>(out.x, 0.0, 0.0, out.w);
}

// U and V in .y and .z, coverage in .w.
fn chroma(p: vec2<f32>, tile: VsOut) -> vec4<f32> {
    var uv = tile.background.yz;
    if (inside_content(p, tile)) {
        let st = tile.uv;
        let flags = u32(tile.shape.w);
        if ((flags & FLAG_NV12) != 0u) {
            uv = textureSampleLevel(tex_u, bilinear, st, 0.0).rg;
        } else {
            uv = vec2<f32>(textureSampleLevel(tex_u, bilinear, st, 0.0).r, textureSampleLevel(tex_v, bilinear, st, 0.0).r);
        }
    }
    return finish(p, vec3<f32>(0.0, uv), tile);
}

struct PlanarChroma {
    @location(0) u: vec4<f32>,
    @location(1) v: vec4<f32>,
};

@fragment
fn fs_chroma_planar(tile: VsOut) -> PlanarChroma {
    let p = canvas_position(tile.position);
    let c = chroma(p, tile);
    var out: PlanarChroma;
    out.u = vec4<f32>(c.y, 0.0, 0.0, c.w);
    out.v = vec4<f32>(c.z, 0.0, 0.0, c.w);
    return out;
}

@fragment
fn fs_chroma_interleaved(tile: VsOut) -> @location(0) vec4<f32> {
    let p = canvas_position(tile.position);
    let c = chroma(p, tile);
    return vec4<f32>(c.y, c.z, 0.0, c.w);
}

// Opaque tiles: the picture covers the whole tile, no border, corners or fading. They read
// only what they need, so that a software rasterizer interpolates nothing else.

struct OpaqueIn {
    // w: flags (FLAG_*).
    @location(3) @interpolate(flat) shape: vec4<f32>,
    @location(6) @interpolate(linear) uv: vec2<f32>,
};

struct OpaqueLumaIn {
    @location(6) @interpolate(linear) uv: vec2<f32>,
};

@fragment
fn fs_luma_opaque(tile: OpaqueLumaIn) -> @location(0) vec4<f32> {
    return vec4<f32>(textureSampleLevel(tex_y, bilinear, tile.uv, 0.0).r, 0.0, 0.0, 1.0);
}

fn chroma_opaque(tile: OpaqueIn) -> vec2<f32> {
    let st = tile.uv;
    if ((u32(tile.shape.w) & FLAG_NV12) != 0u) {
        return textureSampleLevel(tex_u, bilinear, st, 0.0).rg;
    }
    return vec2<f32>(textureSampleLevel(tex_u, bilinear, st, 0.0).r, textureSampleLevel(tex_v, bilinear, st, 0.0).r);
}

@fragment
fn fs_chroma_planar_opaque(tile: OpaqueIn) -> PlanarChroma {
    let c = chroma_opaque(tile);
    var out: PlanarChroma;
    out.u = vec4<f32>(c.x, 0.0, 0.0, 1.0);
    out.v = vec4<f32>(c.y, 0.0, 0.0, 1.0);
    return out;
}

@fragment
fn fs_chroma_interleaved_opaque(tile: OpaqueIn) -> @location(0) vec4<f32> {
    let c = chroma_opaque(tile);
    return vec4<f32>(c.x, c.y, 0.0, 1.0);
}
