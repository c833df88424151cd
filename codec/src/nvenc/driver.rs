//! The part that talks to the NVIDIA driver: `libnvidia-encode.so.1` and `libcuda.so.1`
//! opened with `libloading`, NVENC API 12.1 structures from `nvidia-video-codec-sdk`'s `sys`
//! module, synchronous encoding from host memory (NV12 input buffers).
//!
//! Not exercised on machines without a driver: `codec/tests/nvenc_driver.rs` runs it when
//! `libnvidia-encode.so.1` loads.
#![allow(unsafe_code)]

use std::{
    ffi::{CStr, c_char, c_int, c_uint, c_void},
    ptr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use libloading::Library;
use mcu_media::VideoFrame;
use nvidia_video_codec_sdk::sys::nvEncodeAPI as nv;

use super::{CUDA_LIBRARY, ENCODE_LIBRARY, NvencInfo, NvencStatus};
use crate::video::{Backend, EncodeError, EncodedFrame, EncoderConfig, OpenError, RateControl, RateError, VideoCodec, VideoEncoder, check_input, check_rate};

type CuResult = c_int;
type CuDevice = c_int;
type CuContext = *mut c_void;

/// The CUDA driver entry points we use.
struct Cuda {
    ctx_push: unsafe extern "C" fn(CuContext) -> CuResult,
    ctx_pop: unsafe extern "C" fn(*mut CuContext) -> CuResult,
    _lib: Library,
}

/// Both driver libraries, NVENC's function table and one CUDA context on device 0, loaded once
/// per process and never unloaded (sessions may outlive any one encoder).
struct Driver {
    api: nv::NV_ENCODE_API_FUNCTION_LIST,
    max_version: u32,
    cuda: Cuda,
    context: CuContext,
    device: String,
    _nvenc_lib: Library,
}

// SAFETY: the function table and the CUDA context are process-wide driver objects that the
// driver allows to be used from any thread (we push the context around each use).
unsafe impl Send for Driver {}
// SAFETY: as above; Driver is never mutated after loading.
unsafe impl Sync for Driver {}

/// The API version this build's headers are (12.1), as `NvEncodeAPIGetMaxSupportedVersion`
/// reports versions: `major << 4 | minor`.
const NEEDED_VERSION: u32 = (nv::NVENCAPI_MAJOR_VERSION << 4) | nv::NVENCAPI_MINOR_VERSION;

fn load_library(name: &str) -> Result<Library, String> {
    // SAFETY: loading a shared library runs its initialisers; the NVIDIA driver libraries
    // are designed to be dlopen'ed (that is how every NVENC user finds them).
    unsafe { Library::new(name) }.map_err(|e| e.to_string())
}

/// Copies a function pointer of type `T` out of `lib`.
fn symbol<T: Copy>(lib: &Library, name: &str) -> Result<T, String> {
    let cname = format!("{name}\0");
    // SAFETY: the caller names `T` as the C signature the driver documents for `name`; the
    // pointer stays valid because the library is kept loaded for the life of the process.
    unsafe { lib.get::<T>(cname.as_bytes()).map(|s| *s).map_err(|e| format!("{name}: {e}")) }
}

impl Driver {
    fn get() -> Result<Arc<Driver>, String> {
        static DRIVER: OnceLock<Result<Arc<Driver>, String>> = OnceLock::new();
        DRIVER.get_or_init(|| Driver::load(ENCODE_LIBRARY, CUDA_LIBRARY).map(Arc::new)).clone()
    }

    fn load(encode_library: &str, cuda_library: &str) -> Result<Driver, String> {
        let nvenc_lib = load_library(encode_library).map_err(|e| format!("{encode_library} could not be loaded (no NVIDIA driver): {e}"))?;
        let get_max: unsafe extern "C" fn(*mut u32) -> u32 = symbol(&nvenc_lib, "NvEncodeAPIGetMaxSupportedVersion")?;
        let create: unsafe extern "C" fn(*mut nv::NV_ENCODE_API_FUNCTION_LIST) -> u32 = symbol(&nvenc_lib, "NvEncodeAPICreateInstance")?;
        let mut max_version = 0u32;
        // SAFETY: writes one u32.
        let rc = unsafe { get_max(&mut max_version) };
        if rc != 0 {
            return Err(format!("NvEncodeAPIGetMaxSupportedVersion failed with status {rc}"));
        }
        if max_version < NEEDED_VERSION {
            return Err(format!(
                "the driver supports NVENC API {}.{}, this build needs {}.{} (driver 530 or newer)",
                max_version >> 4,
                max_version & 0xf,
                nv::NVENCAPI_MAJOR_VERSION,
                nv::NVENCAPI_MINOR_VERSION
            ));
        }
        let mut api = nv::NV_ENCODE_API_FUNCTION_LIST { version: nv::NV_ENCODE_API_FUNCTION_LIST_VER, ..Default::default() };
        // SAFETY: api is a zeroed function list with its version set, as the API requires.
        let rc = unsafe { create(&mut api) };
        if rc != 0 {
            return Err(format!("NvEncodeAPICreateInstance failed with status {rc}"));
        }

        let cuda_lib = load_library(cuda_library).map_err(|e| format!("{cuda_library} could not be loaded: {e}"))?;
        let init: unsafe extern "C" fn(c_uint) -> CuResult = symbol(&cuda_lib, "cuInit")?;
        let count: unsafe extern "C" fn(*mut c_int) -> CuResult = symbol(&cuda_lib, "cuDeviceGetCount")?;
        let device_get: unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult = symbol(&cuda_lib, "cuDeviceGet")?;
        let name: unsafe extern "C" fn(*mut c_char, c_int, CuDevice) -> CuResult = symbol(&cuda_lib, "cuDeviceGetName")?;
        let ctx_create: unsafe extern "C" fn(*mut CuContext, c_uint, CuDevice) -> CuResult = symbol(&cuda_lib, "cuCtxCreate_v2")?;
        let ctx_push: unsafe extern "C" fn(CuContext) -> CuResult = symbol(&cuda_lib, "cuCtxPushCurrent_v2")?;
        let ctx_pop: unsafe extern "C" fn(*mut CuContext) -> CuResult = symbol(&cuda_lib, "cuCtxPopCurrent_v2")?;
        // SAFETY: documented CUDA driver calls with valid out-pointers.
        let (device, device_name, context) = unsafe {
            let rc = init(0);
            if rc != 0 {
                return Err(format!("cuInit failed with CUDA error {rc}"));
            }
            let mut n = 0;
            let rc = count(&mut n);
            if rc != 0 || n == 0 {
                return Err(format!("no CUDA device (cuDeviceGetCount: error {rc}, {n} devices)"));
            }
            let mut device = 0;
            let rc = device_get(&mut device, 0);
            if rc != 0 {
                return Err(format!("cuDeviceGet(0) failed with CUDA error {rc}"));
            }
            let mut buf = [0 as c_char; 256];
            let device_name = if name(buf.as_mut_ptr(), buf.len() as c_int, device) == 0 {
                CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            } else {
                "CUDA device 0".to_string()
            };
            let mut context: CuContext = ptr::null_mut();
            let rc = ctx_create(&mut context, 0, device);
            if rc != 0 || context.is_null() {
                return Err(format!("{device_name}: cuCtxCreate failed with CUDA error {rc}"));
            }
            // cuCtxCreate makes the context current on this thread; we push it explicitly
            // around every use instead.
            let mut popped = ptr::null_mut();
            (ctx_pop)(&mut popped);
            (device, device_name, context)
        };
        let _ = device;
        Ok(Driver { api, max_version, cuda: Cuda { ctx_push, ctx_pop, _lib: cuda_lib }, context, device: device_name, _nvenc_lib: nvenc_lib })
    }

    /// Runs `f` with the CUDA context current on this thread.
    fn with_context<T>(&self, f: impl FnOnce() -> T) -> T {
        // SAFETY: the context is valid for the life of the process; push and pop pair up.
        unsafe {
            (self.cuda.ctx_push)(self.context);
        }
        let out = f();
        let mut popped = ptr::null_mut();
        // SAFETY: pops the context pushed above.
        unsafe {
            (self.cuda.ctx_pop)(&mut popped);
        }
        out
    }
}

fn status_ok(status: nv::NVENCSTATUS, what: &str) -> Result<(), String> {
    if status == nv::NVENCSTATUS::NV_ENC_SUCCESS { Ok(()) } else { Err(format!("{what}: {status:?}")) }
}

/// Unwraps a function-table entry.
macro_rules! api {
    ($driver:expr, $name:ident) => {
        $driver.api.$name.ok_or_else(|| format!("the driver's NVENC function list lacks {}", stringify!($name)))?
    };
}

/// An open NVENC session (destroyed on drop).
struct Session {
    driver: Arc<Driver>,
    encoder: *mut c_void,
}

impl Session {
    fn open(driver: &Arc<Driver>) -> Result<Session, String> {
        let open = api!(driver, nvEncOpenEncodeSessionEx);
        let mut params = nv::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS {
            version: nv::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER,
            deviceType: nv::NV_ENC_DEVICE_TYPE::NV_ENC_DEVICE_TYPE_CUDA,
            device: driver.context,
            apiVersion: nv::NVENCAPI_VERSION,
            ..Default::default()
        };
        let mut encoder = ptr::null_mut();
        // SAFETY: params is a complete, versioned structure naming our CUDA context.
        let status = driver.with_context(|| unsafe { open(&mut params, &mut encoder) });
        if status != nv::NVENCSTATUS::NV_ENC_SUCCESS || encoder.is_null() {
            match driver.api.nvEncDestroyEncoder {
                // SAFETY: the API requires destroying a half-opened session.
                Some(destroy) if !encoder.is_null() => unsafe {
                    destroy(encoder);
                },
                _ => {}
            }
            return Err(format!(
                "{} could not open an NVENC session ({status:?}): this GPU has no NVENC (A100, H100 and H200 have none) or its session limit is reached",
                driver.device
            ));
        }
        Ok(Session { driver: driver.clone(), encoder })
    }

    fn last_error(&self) -> String {
        let Some(f) = self.driver.api.nvEncGetLastErrorString else { return String::new() };
        // SAFETY: returns a NUL-terminated string owned by the session, or null.
        unsafe {
            let s = f(self.encoder);
            if s.is_null() { String::new() } else { CStr::from_ptr(s).to_string_lossy().into_owned() }
        }
    }

    fn check(&self, status: nv::NVENCSTATUS, what: &str) -> Result<(), String> {
        status_ok(status, what).map_err(|e| {
            let detail = self.last_error();
            if detail.is_empty() { e } else { format!("{e} ({detail})") }
        })
    }

    fn codecs(&self) -> Result<Vec<VideoCodec>, String> {
        let count_fn = api!(self.driver, nvEncGetEncodeGUIDCount);
        let guids_fn = api!(self.driver, nvEncGetEncodeGUIDs);
        let mut count = 0u32;
        // SAFETY: writes one u32.
        self.check(unsafe { count_fn(self.encoder, &mut count) }, "nvEncGetEncodeGUIDCount")?;
        let mut guids = vec![nv::GUID::default(); count as usize];
        let mut got = 0u32;
        // SAFETY: guids holds `count` GUIDs.
        self.check(unsafe { guids_fn(self.encoder, guids.as_mut_ptr(), count, &mut got) }, "nvEncGetEncodeGUIDs")?;
        guids.truncate(got as usize);
        Ok([(nv::NV_ENC_CODEC_H264_GUID, VideoCodec::H264), (nv::NV_ENC_CODEC_HEVC_GUID, VideoCodec::Hevc), (nv::NV_ENC_CODEC_AV1_GUID, VideoCodec::Av1)]
            .into_iter()
            .filter(|(g, _)| guids.contains(g))
            .map(|(_, c)| c)
            .collect())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(destroy) = self.driver.api.nvEncDestroyEncoder {
            // SAFETY: the session is open and destroyed once; buffers were destroyed first.
            self.driver.with_context(|| unsafe {
                destroy(self.encoder);
            });
        }
    }
}

pub(super) fn probe() -> NvencStatus {
    probe_driver(Driver::get())
}

pub(super) fn probe_libraries(encode_library: &str, cuda_library: &str) -> NvencStatus {
    probe_driver(Driver::load(encode_library, cuda_library).map(Arc::new))
}

fn probe_driver(driver: Result<Arc<Driver>, String>) -> NvencStatus {
    let driver = match driver {
        Ok(d) => d,
        Err(reason) => return NvencStatus::Absent { reason },
    };
    let session = match Session::open(&driver) {
        Ok(s) => s,
        Err(reason) => return NvencStatus::Absent { reason },
    };
    match session.codecs() {
        Ok(codecs) if codecs.is_empty() => NvencStatus::Absent { reason: format!("{}: NVENC lists none of H.264, HEVC, AV1", driver.device) },
        Ok(codecs) => {
            NvencStatus::Available(NvencInfo { device: driver.device.clone(), driver_api: (driver.max_version >> 4, driver.max_version & 0xf), codecs })
        }
        Err(e) => NvencStatus::Absent { reason: format!("{}: listing NVENC codecs failed: {e}", driver.device) },
    }
}

/// A configured session with one host-memory NV12 input buffer and one bitstream buffer.
struct Active {
    session: Session,
    input: nv::NV_ENC_INPUT_PTR,
    output: nv::NV_ENC_OUTPUT_PTR,
    /// Kept for reconfiguration; `init.encodeConfig` points at `*cfg`.
    init: Box<nv::NV_ENC_INITIALIZE_PARAMS>,
    cfg: Box<nv::NV_ENC_CONFIG>,
    width: u32,
    height: u32,
}

impl Drop for Active {
    fn drop(&mut self) {
        let d = self.session.driver.clone();
        d.with_context(|| {
            // SAFETY: the end-of-stream picture has no buffers; then the buffers created in
            // `Active::new` are destroyed once, before the session (dropped after this).
            unsafe {
                if let Some(encode) = d.api.nvEncEncodePicture {
                    let mut eos = nv::NV_ENC_PIC_PARAMS {
                        version: nv::NV_ENC_PIC_PARAMS_VER,
                        encodePicFlags: nv::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_EOS as u32,
                        ..Default::default()
                    };
                    encode(self.session.encoder, &mut eos);
                }
                if let Some(f) = d.api.nvEncDestroyInputBuffer {
                    f(self.session.encoder, self.input);
                }
                if let Some(f) = d.api.nvEncDestroyBitstreamBuffer {
                    f(self.session.encoder, self.output);
                }
            }
        });
    }
}

fn codec_guid(codec: VideoCodec) -> nv::GUID {
    match codec {
        VideoCodec::H264 => nv::NV_ENC_CODEC_H264_GUID,
        VideoCodec::Hevc => nv::NV_ENC_CODEC_HEVC_GUID,
        VideoCodec::Av1 | VideoCodec::Vp8 => nv::NV_ENC_CODEC_AV1_GUID,
    }
}

/// Sets bitrate and VBV (one frame: low delay) in a configuration.
fn apply_rate(cfg: &mut nv::NV_ENC_CONFIG, init: &mut nv::NV_ENC_INITIALIZE_PARAMS, rate: RateControl) {
    cfg.rcParams.rateControlMode = nv::NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_CBR;
    cfg.rcParams.averageBitRate = rate.bitrate_bps;
    cfg.rcParams.maxBitRate = rate.bitrate_bps;
    let vbv = (rate.bitrate_bps as f64 / rate.frame_rate).round() as u32;
    cfg.rcParams.vbvBufferSize = vbv;
    cfg.rcParams.vbvInitialDelay = vbv;
    init.frameRateNum = (rate.frame_rate * 1000.0).round() as u32;
    init.frameRateDen = 1000;
}

impl Active {
    fn new(driver: &Arc<Driver>, codec: VideoCodec, config: &EncoderConfig, width: u32, height: u32) -> Result<Active, String> {
        let session = Session::open(driver)?;
        let get_preset = api!(driver, nvEncGetEncodePresetConfigEx);
        let initialize = api!(driver, nvEncInitializeEncoder);
        let create_input = api!(driver, nvEncCreateInputBuffer);
        let create_output = api!(driver, nvEncCreateBitstreamBuffer);
        let guid = codec_guid(codec);
        let tuning = nv::NV_ENC_TUNING_INFO::NV_ENC_TUNING_INFO_ULTRA_LOW_LATENCY;
        let mut preset = nv::NV_ENC_PRESET_CONFIG {
            version: nv::NV_ENC_PRESET_CONFIG_VER,
            presetCfg: nv::NV_ENC_CONFIG { version: nv::NV_ENC_CONFIG_VER, ..Default::default() },
            ..Default::default()
        };
        driver.with_context(|| -> Result<Active, String> {
            // SAFETY: preset is versioned and writable.
            session.check(unsafe { get_preset(session.encoder, guid, nv::NV_ENC_PRESET_P1_GUID, tuning, &mut preset) }, "nvEncGetEncodePresetConfigEx")?;
            let mut cfg = Box::new(preset.presetCfg);
            cfg.version = nv::NV_ENC_CONFIG_VER;
            let gop = if config.keyframe_interval == 0 { nv::NVENC_INFINITE_GOPLENGTH } else { config.keyframe_interval };
            cfg.gopLength = gop;
            cfg.frameIntervalP = 1; // no B-frames: output order is input order, no delay
            // SAFETY: the union member written is the one for `codec` (the preset filled it).
            unsafe {
                match codec {
                    VideoCodec::H264 => {
                        // Constrained baseline for browsers and SIP phones.
                        cfg.profileGUID = nv::NV_ENC_H264_PROFILE_BASELINE_GUID;
                        let h = &mut cfg.encodeCodecConfig.h264Config;
                        h.idrPeriod = gop;
                        h.set_repeatSPSPPS(1);
                    }
                    VideoCodec::Hevc => {
                        let h = &mut cfg.encodeCodecConfig.hevcConfig;
                        h.idrPeriod = gop;
                        h.set_repeatSPSPPS(1);
                    }
                    VideoCodec::Av1 | VideoCodec::Vp8 => {
                        let a = &mut cfg.encodeCodecConfig.av1Config;
                        a.idrPeriod = gop;
                        a.set_repeatSeqHdr(1);
                    }
                }
            }
            let mut init = Box::new(nv::NV_ENC_INITIALIZE_PARAMS {
                version: nv::NV_ENC_INITIALIZE_PARAMS_VER,
                encodeGUID: guid,
                presetGUID: nv::NV_ENC_PRESET_P1_GUID,
                encodeWidth: width,
                encodeHeight: height,
                darWidth: width,
                darHeight: height,
                enablePTD: 1,
                maxEncodeWidth: width,
                maxEncodeHeight: height,
                tuningInfo: tuning,
                ..Default::default()
            });
            apply_rate(&mut cfg, &mut init, config.rate);
            init.encodeConfig = &mut *cfg;
            // SAFETY: init and the configuration it points to are complete and versioned.
            session.check(unsafe { initialize(session.encoder, &mut *init) }, "nvEncInitializeEncoder")?;
            let mut input = nv::NV_ENC_CREATE_INPUT_BUFFER {
                version: nv::NV_ENC_CREATE_INPUT_BUFFER_VER,
                width,
                height,
                bufferFmt: nv::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12,
                ..Default::default()
            };
            // SAFETY: versioned structure; the driver fills `inputBuffer`.
            session.check(unsafe { create_input(session.encoder, &mut input) }, "nvEncCreateInputBuffer")?;
            let mut output = nv::NV_ENC_CREATE_BITSTREAM_BUFFER { version: nv::NV_ENC_CREATE_BITSTREAM_BUFFER_VER, ..Default::default() };
            // SAFETY: as above, for `bitstreamBuffer`.
            let status = unsafe { create_output(session.encoder, &mut output) };
            if let Err(e) = session.check(status, "nvEncCreateBitstreamBuffer") {
                if let Some(f) = driver.api.nvEncDestroyInputBuffer {
                    // SAFETY: destroys the input buffer created just above.
                    unsafe {
                        f(session.encoder, input.inputBuffer);
                    }
                }
                return Err(e);
            }
            Ok(Active { input: input.inputBuffer, output: output.bitstreamBuffer, init, cfg, width, height, session })
        })
    }

    /// Copies the frame into the input buffer as NV12, encodes it, returns the bitstream.
    fn encode(&mut self, frame: &VideoFrame, force_idr: bool) -> Result<(Vec<u8>, bool), String> {
        let d = self.session.driver.clone();
        let lock_in = api!(d, nvEncLockInputBuffer);
        let unlock_in = api!(d, nvEncUnlockInputBuffer);
        let encode = api!(d, nvEncEncodePicture);
        let lock_out = api!(d, nvEncLockBitstream);
        let unlock_out = api!(d, nvEncUnlockBitstream);
        d.with_context(|| {
            let mut lock = nv::NV_ENC_LOCK_INPUT_BUFFER { version: nv::NV_ENC_LOCK_INPUT_BUFFER_VER, inputBuffer: self.input, ..Default::default() };
            // SAFETY: locks our input buffer; the driver returns a CPU pointer and pitch.
            self.session.check(unsafe { lock_in(self.session.encoder, &mut lock) }, "nvEncLockInputBuffer")?;
            let pitch = lock.pitch as usize;
            let (w, h) = (self.width as usize, self.height as usize);
            let chroma_rows = h.div_ceil(2);
            let row_bytes = 2 * w.div_ceil(2);
            if pitch < row_bytes || lock.bufferDataPtr.is_null() {
                // SAFETY: unlocks the buffer locked above.
                unsafe { unlock_in(self.session.encoder, self.input) };
                return Err(format!("input buffer pitch {pitch} is below the row size {row_bytes}"));
            }
            // SAFETY: a locked NV12 input buffer holds `height` luma rows then ceil(height/2)
            // chroma rows, `pitch` bytes apart, and we write at most `row_bytes <= pitch` per
            // row; the source rows exist because the frame was validated.
            unsafe {
                let base = lock.bufferDataPtr as *mut u8;
                let y = &frame.planes[0];
                for r in 0..h {
                    ptr::copy_nonoverlapping(y.data[r * y.stride..].as_ptr(), base.add(r * pitch), w);
                }
                let uv = base.add(h * pitch);
                let cw = w.div_ceil(2);
                for r in 0..chroma_rows {
                    let dst = std::slice::from_raw_parts_mut(uv.add(r * pitch), row_bytes);
                    match frame.format {
                        mcu_media::PixelFormat::Nv12 => {
                            let p = &frame.planes[1];
                            dst.copy_from_slice(&p.data[r * p.stride..r * p.stride + row_bytes]);
                        }
                        mcu_media::PixelFormat::I420 => {
                            let (u, v) = (&frame.planes[1], &frame.planes[2]);
                            let (us, vs) = (&u.data[r * u.stride..r * u.stride + cw], &v.data[r * v.stride..r * v.stride + cw]);
                            for (i, pair) in dst.chunks_exact_mut(2).enumerate() {
                                pair[0] = us[i];
                                pair[1] = vs[i];
                            }
                        }
                    }
                }
                unlock_in(self.session.encoder, self.input);
            }
            let flags =
                if force_idr { nv::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_FORCEIDR as u32 | nv::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_OUTPUT_SPSPPS as u32 } else { 0 };
            let mut pic = nv::NV_ENC_PIC_PARAMS {
                version: nv::NV_ENC_PIC_PARAMS_VER,
                inputWidth: self.width,
                inputHeight: self.height,
                inputPitch: pitch as u32,
                encodePicFlags: flags,
                inputTimeStamp: frame.pts.as_micros() as u64,
                inputBuffer: self.input,
                outputBitstream: self.output,
                bufferFmt: nv::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12,
                pictureStruct: nv::NV_ENC_PIC_STRUCT::NV_ENC_PIC_STRUCT_FRAME,
                ..Default::default()
            };
            // SAFETY: complete, versioned picture parameters naming our buffers.
            self.session.check(unsafe { encode(self.session.encoder, &mut pic) }, "nvEncEncodePicture")?;
            let mut out = nv::NV_ENC_LOCK_BITSTREAM { version: nv::NV_ENC_LOCK_BITSTREAM_VER, outputBitstream: self.output, ..Default::default() };
            // SAFETY: locks (waiting for) our bitstream buffer; the driver fills pointer and size.
            self.session.check(unsafe { lock_out(self.session.encoder, &mut out) }, "nvEncLockBitstream")?;
            // SAFETY: the locked buffer holds `bitstreamSizeInBytes` bytes until unlocked.
            let data = unsafe {
                let data = if out.bitstreamBufferPtr.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(out.bitstreamBufferPtr as *const u8, out.bitstreamSizeInBytes as usize).to_vec()
                };
                unlock_out(self.session.encoder, self.output);
                data
            };
            let key = matches!(out.pictureType, nv::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_IDR);
            Ok((data, key))
        })
    }

    fn reconfigure(&mut self, rate: RateControl) -> Result<(), String> {
        let d = self.session.driver.clone();
        let reconfigure = api!(d, nvEncReconfigureEncoder);
        apply_rate(&mut self.cfg, &mut self.init, rate);
        self.init.encodeConfig = &mut *self.cfg;
        let mut params = nv::NV_ENC_RECONFIGURE_PARAMS { version: nv::NV_ENC_RECONFIGURE_PARAMS_VER, reInitEncodeParams: *self.init, ..Default::default() };
        // SAFETY: the initialisation parameters the session was created with, rate changed.
        d.with_context(|| self.session.check(unsafe { reconfigure(self.session.encoder, &mut params) }, "nvEncReconfigureEncoder"))
    }
}

/// An NVENC encoder. Sessions are (re)created at the first frame and at size changes.
pub(super) struct NvencEncoder {
    driver: Arc<Driver>,
    codec: VideoCodec,
    config: EncoderConfig,
    active: Option<Active>,
    keyframe_pending: bool,
    last_pts: Option<Duration>,
}

// SAFETY: NVENC sessions may be used from any thread as long as calls on one session do not
// overlap; `&mut self` guarantees that, and the CUDA context is pushed around every call.
unsafe impl Send for NvencEncoder {}

impl NvencEncoder {
    pub(super) fn new(codec: VideoCodec, config: &EncoderConfig) -> Result<NvencEncoder, OpenError> {
        check_rate(codec, config.rate).map_err(|source| OpenError::Rate { codec, source })?;
        if codec == VideoCodec::Vp8 {
            return Err(OpenError::Unsupported { codec, what: "NVENC does not encode VP8".into() });
        }
        let driver = Driver::get().map_err(|what| OpenError::Unsupported { codec, what })?;
        // Fail now, not at the first frame, when this GPU cannot encode the codec.
        let session = Session::open(&driver).map_err(|what| OpenError::Unsupported { codec, what })?;
        let codecs = session.codecs().map_err(|detail| OpenError::Library { codec, library: ENCODE_LIBRARY, detail })?;
        if !codecs.contains(&codec) {
            return Err(OpenError::Unsupported { codec, what: format!("{} has no {codec} NVENC (it has {codecs:?})", driver.device) });
        }
        drop(session);
        Ok(NvencEncoder { driver, codec, config: *config, active: None, keyframe_pending: false, last_pts: None })
    }
}

impl VideoEncoder for NvencEncoder {
    fn codec(&self) -> VideoCodec {
        self.codec
    }

    fn backend(&self) -> Backend {
        Backend::Nvenc
    }

    fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<EncodedFrame>, EncodeError> {
        let codec = self.codec;
        check_input(codec, frame, self.last_pts)?;
        let pts = frame.pts;
        let lib = |detail| EncodeError::Library { codec, library: ENCODE_LIBRARY, pts, detail };
        if frame.width < 32 || frame.height < 32 || frame.width > 8192 || frame.height > 8192 {
            return Err(EncodeError::UnsupportedSize { codec, pts, width: frame.width, height: frame.height, why: "NVENC encodes 32x32 up to 8192x8192" });
        }
        if self.active.as_ref().is_none_or(|a| (a.width, a.height) != (frame.width, frame.height)) {
            self.active = None;
            self.active = Some(Active::new(&self.driver, codec, &self.config, frame.width, frame.height).map_err(lib)?);
        }
        self.last_pts = Some(pts);
        let force = std::mem::take(&mut self.keyframe_pending);
        let active = self.active.as_mut().expect("created just above");
        let (data, keyframe) = active.encode(frame, force).map_err(lib)?;
        if data.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![EncodedFrame { codec, data, pts, keyframe }])
    }

    fn request_keyframe(&mut self) {
        self.keyframe_pending = true;
    }

    fn set_rate(&mut self, rate: RateControl) -> Result<(), RateError> {
        let codec = self.codec;
        check_rate(codec, rate)?;
        if let Some(active) = self.active.as_mut() {
            active.reconfigure(rate).map_err(|detail| RateError::Library { codec, library: ENCODE_LIBRARY, detail })?;
        }
        self.config.rate = rate;
        Ok(())
    }

    fn rate(&self) -> RateControl {
        self.config.rate
    }

    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError> {
        Ok(Vec::new())
    }
}
