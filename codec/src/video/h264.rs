//! H.264 through openh264 (bundled source): decoder, and a constrained-baseline encoder.
//!
//! The encoder's output is what browsers and SIP phones accept for `packetization-mode=1`:
//! profile-level-id `42c0xx` (baseline with constraint_set0 and constraint_set1, i.e.
//! constrained baseline), one slice per picture per thread, SPS and PPS before every IDR,
//! Annex-B start codes (the RTP packetizer splits NAL units and fragments them with FU-A).
//!
//! Unsafe: the encoder is driven through openh264's C interface (`openh264-sys2`): the safe
//! wrapper fixes parameters we set otherwise (the deblocking filter) and has no run-time
//! bitrate or frame-rate setter.
#![allow(unsafe_code)]

use std::{os::raw::c_int, time::Duration};

use mcu_media::{PixelFormat, VideoFrame};
use openh264::{
    OpenH264API,
    decoder::{Decoder, DecoderConfig, Flush},
    formats::YUVSource,
};
use openh264_sys2 as sys;

use super::{
    Backend, DecoderOptions, EncodeError, EncodedFrame, EncoderConfig, OpenError, RateControl, RateError, VideoCodec, VideoEncoder, check_input, check_rate,
    gate::{Gated, RawDecoder, RawError, UnitKind, gated_decoder},
    yuv::{I420, as_i420, frame_from_i420},
};
use crate::bitstream::{h264_nal, h264_nal_types};

const LIBRARY: &str = "openh264";

/// The H.264 decoder (openh264). Input: Annex-B access units.
pub struct H264Decoder(Gated<RawH264>);

struct RawH264 {
    decoder: Decoder,
    format: PixelFormat,
}

impl H264Decoder {
    /// A decoder returning frames in `options.format`. openh264 decodes on the caller's thread
    /// (its own threading is experimental), so `options.threads` is ignored.
    pub fn new(options: &DecoderOptions) -> Result<H264Decoder, OpenError> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new().flush_after_decode(Flush::NoFlush))
            .map_err(|e| OpenError::Library { codec: VideoCodec::H264, library: LIBRARY, detail: e.to_string() })?;
        Ok(H264Decoder(Gated::new(RawH264 { decoder, format: options.format })))
    }
}

gated_decoder!(H264Decoder, RawH264);

/// What an Annex-B access unit is, from its NAL unit types.
pub(super) fn classify(data: &[u8]) -> UnitKind {
    let mut kind = UnitKind::ParameterSets;
    for t in h264_nal_types(data) {
        match t {
            h264_nal::IDR => return UnitKind::Key,
            h264_nal::SPS | h264_nal::PPS | h264_nal::SEI | h264_nal::AUD => {}
            _ => kind = UnitKind::Delta,
        }
    }
    kind
}

/// Refuses a parameter set announcing a picture beyond [`super::MAX_DECODE_PIXELS`], before a
/// decoder allocates it.
pub(super) fn check_sps_size(data: &[u8]) -> Result<(), RawError> {
    match crate::bitstream::h264_sps_size(data) {
        Some((w, h)) if w == 0 || h == 0 || w as u64 * h as u64 > super::MAX_DECODE_PIXELS => {
            Err(RawError::Unsupported(format!("the SPS announces {w}x{h}, beyond the largest picture decoded ({} pixels)", super::MAX_DECODE_PIXELS)))
        }
        _ => Ok(()),
    }
}

impl RawDecoder for RawH264 {
    const CODEC: VideoCodec = VideoCodec::H264;

    const LIBRARY: &'static str = LIBRARY;

    fn classify(data: &[u8]) -> UnitKind {
        classify(data)
    }

    fn decode_raw(&mut self, data: &[u8], pts: Duration) -> Result<Option<VideoFrame>, RawError> {
        check_sps_size(data)?;
        let format = self.format;
        let decoded = self.decoder.decode(data).map_err(|e| RawError::Corrupt(e.to_string()))?;
        let Some(yuv) = decoded else { return Ok(None) };
        let (w, h) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        let (w, h) = (u32::try_from(w).unwrap_or(0), u32::try_from(h).unwrap_or(0));
        frame_from_i420((yuv.y(), ys), (yuv.u(), us), (yuv.v(), vs), w, h, format, pts)
            .map(Some)
            .ok_or_else(|| RawError::Corrupt(format!("decoder returned an inconsistent {w}x{h} picture")))
    }
}

/// The H.264 encoder (openh264): constrained baseline, real-time camera tuning, bitrate rate
/// control without frame skipping, low complexity, and the in-loop deblocking filter off
/// (as x264's `ultrafast`: at the bitrates a composite is sent at it costs about a tenth of the
/// encode and the picture keeps its detail).
pub struct H264Encoder {
    /// Created at the first frame and again when the size changes (with the rate in force).
    encoder: Option<RawEncoder>,
    config: EncoderConfig,
    size: (u32, u32),
    /// Highest bitrate told to the encoder (openh264 clamps the target to its maximum).
    max_bitrate: u32,
    keyframe_pending: bool,
    last_pts: Option<Duration>,
    scratch: Vec<u8>,
}

/// One openh264 `ISVCEncoder`, driven through its C interface so that every field of
/// `SEncParamExt` is ours to set (the `openh264` crate's wrapper fixes some, the deblocking
/// filter among them).
struct RawEncoder {
    ptr: *mut sys::ISVCEncoder,
    info: Box<sys::SFrameBSInfo>,
}

// SAFETY: the encoder object is owned by this value alone and openh264 keeps no thread-local
// state for it; it is used from one thread at a time (`&mut self`).
unsafe impl Send for RawEncoder {}

/// The `SEncParamExt` for `config` at `width`x`height`, on top of openh264's defaults.
fn params(defaults: sys::SEncParamExt, config: &EncoderConfig, width: u32, height: u32) -> sys::SEncParamExt {
    let bitrate = config.rate.bitrate_bps.min(i32::MAX as u32) as c_int;
    let fps = config.rate.frame_rate as f32;
    let mut p = defaults;
    p.iUsageType = sys::CAMERA_VIDEO_REAL_TIME;
    p.iPicWidth = width as c_int;
    p.iPicHeight = height as c_int;
    p.iTargetBitrate = bitrate;
    p.iMaxBitrate = bitrate;
    p.iRCMode = sys::RC_BITRATE_MODE;
    p.fMaxFrameRate = fps;
    p.bEnableFrameSkip = false;
    p.bEnableDenoise = false;
    p.bEnableSceneChangeDetect = false;
    p.bEnableBackgroundDetection = false;
    p.bEnableAdaptiveQuant = true;
    p.bEnableLongTermReference = false;
    p.iComplexityMode = sys::LOW_COMPLEXITY;
    p.uiIntraPeriod = config.keyframe_interval;
    p.eSpsPpsIdStrategy = sys::CONSTANT_ID;
    p.iMultipleThreadIdc = config.threads.clamp(1, 16) as u16;
    p.iLoopFilterDisableIdc = sys::DEBLOCKING_IDC_1 as c_int;
    p.iSpatialLayerNum = 1;
    p.iTemporalLayerNum = 1;
    let layer = &mut p.sSpatialLayers[0];
    layer.uiProfileIdc = sys::PRO_BASELINE;
    layer.iVideoWidth = width as c_int;
    layer.iVideoHeight = height as c_int;
    layer.fFrameRate = fps;
    layer.iSpatialBitrate = bitrate;
    layer.iMaxSpatialBitrate = bitrate;
    match config.max_nal_size {
        Some(max) => {
            p.uiMaxNalSize = max;
            layer.sSliceArgument.uiSliceMode = sys::SM_SIZELIMITED_SLICE;
            layer.sSliceArgument.uiSliceSizeConstraint = max;
        }
        None => {
            layer.sSliceArgument.uiSliceMode = sys::SM_SINGLE_SLICE;
            layer.sSliceArgument.uiSliceNum = 1;
        }
    }
    p
}

impl RawEncoder {
    /// A new encoder object, not initialised yet.
    fn create() -> Result<RawEncoder, String> {
        let mut ptr: *mut sys::ISVCEncoder = std::ptr::null_mut();
        // SAFETY: WelsCreateSVCEncoder writes a new encoder object (or nothing) into `ptr`.
        let rc = unsafe { sys::source::APILoader::WelsCreateSVCEncoder(&mut ptr) };
        if rc != 0 || ptr.is_null() {
            return Err(format!("WelsCreateSVCEncoder returned {rc}"));
        }
        // From here on Drop destroys the object, whatever fails next.
        Ok(RawEncoder { ptr, info: Box::default() })
    }

    fn new(config: &EncoderConfig, width: u32, height: u32) -> Result<RawEncoder, String> {
        let mut encoder = RawEncoder::create()?;
        let ptr = encoder.ptr;
        let mut defaults = sys::SEncParamExt::default();
        // SAFETY: `ptr` is a live encoder; GetDefaultParams fills the struct it is given.
        encoder.check("GetDefaultParams", unsafe { (encoder.vtable().GetDefaultParams.expect("openh264 vtable"))(ptr, &mut defaults) })?;
        // openh264 warns on stderr while initialising (e.g. that bitrate control without frame
        // skipping is approximate: measured, it holds the target within a few percent).
        let mut quiet: c_int = sys::WELS_LOG_QUIET as c_int;
        // SAFETY: TRACE_LEVEL takes an int, read during the call; it is accepted before
        // initialisation (welsEncoderExt.cpp, SetOption).
        unsafe { encoder.set_option(sys::ENCODER_OPTION_TRACE_LEVEL, &mut quiet) }?;
        let p = params(defaults, config, width, height);
        // SAFETY: `p` is a complete SEncParamExt (openh264's defaults with our fields), read
        // during the call.
        encoder.check("InitializeExt", unsafe { (encoder.vtable().InitializeExt.expect("openh264 vtable"))(ptr, &p) })?;
        let mut format: c_int = sys::videoFormatI420 as c_int;
        // SAFETY: DATAFORMAT takes an int (EVideoFormatType), read during the call.
        unsafe { encoder.set_option(sys::ENCODER_OPTION_DATAFORMAT, &mut format) }?;
        Ok(encoder)
    }

    fn vtable(&self) -> &sys::ISVCEncoderVtbl {
        // SAFETY: `ptr` is a live encoder object, whose first field points at its vtable.
        unsafe { &**self.ptr }
    }

    fn check(&self, what: &str, rc: c_int) -> Result<(), String> {
        if rc == 0 { Ok(()) } else { Err(format!("{what} returned {rc}")) }
    }

    /// # Safety
    /// `value` must be the type openh264 documents for `option`.
    unsafe fn set_option<T>(&mut self, option: sys::ENCODER_OPTION, value: &mut T) -> Result<(), String> {
        // SAFETY: `ptr` is live; the caller vouches for the value's type; it is read during the call.
        let rc = unsafe { (self.vtable().SetOption.expect("openh264 vtable"))(self.ptr, option, (value as *mut T).cast()) };
        self.check(&format!("SetOption({option})"), rc)
    }

    fn force_intra_frame(&mut self) {
        // SAFETY: `ptr` is a live, initialised encoder.
        unsafe { (self.vtable().ForceIntraFrame.expect("openh264 vtable"))(self.ptr, true) };
    }

    /// Encodes one picture; returns its frame type and the Annex-B bytes of every NAL unit.
    fn encode(&mut self, picture: &I420<'_>, pts: Duration) -> Result<(sys::EVideoFrameType, Vec<u8>), String> {
        let source = sys::SSourcePicture {
            iColorFormat: sys::videoFormatI420 as c_int,
            iStride: [picture.strides[0] as c_int, picture.strides[1] as c_int, picture.strides[2] as c_int, 0],
            // openh264 only reads the planes (SSourcePicture has no const pointers).
            pData: [picture.y.as_ptr().cast_mut(), picture.u.as_ptr().cast_mut(), picture.v.as_ptr().cast_mut(), std::ptr::null_mut()],
            iPicWidth: picture.width as c_int,
            iPicHeight: picture.height as c_int,
            uiTimeStamp: pts.as_millis() as i64,
            bPsnrY: false,
            bPsnrU: false,
            bPsnrV: false,
        };
        let info: *mut sys::SFrameBSInfo = &mut *self.info;
        // SAFETY: the planes are valid for the strides and size given (checked by the caller,
        // `check_input`), and `info` is ours for openh264 to fill.
        let rc = unsafe { (self.vtable().EncodeFrame.expect("openh264 vtable"))(self.ptr, &source, info) };
        self.check("EncodeFrame", rc)?;
        let info = &*self.info;
        let mut data = Vec::with_capacity(info.iFrameSizeInBytes.max(0) as usize);
        for layer in &info.sLayerInfo[..info.iLayerNum.clamp(0, info.sLayerInfo.len() as c_int) as usize] {
            let nals = layer.iNalCount.max(0) as usize;
            if nals == 0 || layer.pNalLengthInByte.is_null() || layer.pBsBuf.is_null() {
                continue;
            }
            // SAFETY: openh264 sets `iNalCount` lengths and a buffer holding that many bytes
            // back to back, valid until the next call on this encoder.
            let lengths = unsafe { std::slice::from_raw_parts(layer.pNalLengthInByte, nals) };
            let total = lengths.iter().map(|&l| l.max(0) as usize).sum();
            data.extend_from_slice(unsafe { std::slice::from_raw_parts(layer.pBsBuf, total) });
        }
        Ok((info.eFrameType, data))
    }
}

impl Drop for RawEncoder {
    fn drop(&mut self) {
        // SAFETY: `ptr` is live and not used after this; Uninitialize is harmless on an
        // encoder whose initialisation failed.
        unsafe {
            (self.vtable().Uninitialize.expect("openh264 vtable"))(self.ptr);
            sys::source::APILoader::WelsDestroySVCEncoder(self.ptr);
        }
    }
}

impl H264Encoder {
    /// An encoder with `config`; the size is taken from the first frame.
    pub fn new(config: &EncoderConfig) -> Result<H264Encoder, OpenError> {
        let codec = VideoCodec::H264;
        check_rate(codec, config.rate).map_err(|source| OpenError::Rate { codec, source })?;
        // Create one now so that a broken library shows up here rather than at the first frame.
        RawEncoder::create().map_err(|detail| OpenError::Library { codec, library: LIBRARY, detail })?;
        Ok(H264Encoder {
            encoder: None,
            config: *config,
            size: (0, 0),
            max_bitrate: config.rate.bitrate_bps,
            keyframe_pending: false,
            last_pts: None,
            scratch: Vec::new(),
        })
    }
}

impl VideoEncoder for H264Encoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }

    fn backend(&self) -> Backend {
        Backend::Software(LIBRARY)
    }

    fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<EncodedFrame>, EncodeError> {
        let codec = VideoCodec::H264;
        check_input(codec, frame, self.last_pts)?;
        let pts = frame.pts;
        let (width, height) = (frame.width, frame.height);
        if width % 2 == 1 || height % 2 == 1 || width < 16 || height < 16 {
            let why = "openh264 needs even sides of at least 16 pixels";
            return Err(EncodeError::UnsupportedSize { codec, pts, width, height, why });
        }
        if width.max(height) > 3840 || width.min(height) > 2160 {
            let why = "openh264 encodes up to 3840x2160";
            return Err(EncodeError::UnsupportedSize { codec, pts, width, height, why });
        }
        let lib = |detail: String| EncodeError::Library { codec, library: LIBRARY, pts, detail };
        if self.encoder.is_none() || self.size != (width, height) {
            self.encoder = None;
            self.encoder = Some(RawEncoder::new(&self.config, width, height).map_err(lib)?);
            self.size = (width, height);
            self.max_bitrate = self.config.rate.bitrate_bps;
        }
        let encoder = self.encoder.as_mut().expect("created just above");
        self.last_pts = Some(pts);
        if std::mem::take(&mut self.keyframe_pending) {
            encoder.force_intra_frame();
        }
        let (frame_type, data) = encoder.encode(&as_i420(frame, &mut self.scratch), pts).map_err(lib)?;
        let keyframe = match frame_type {
            sys::videoFrameTypeIDR | sys::videoFrameTypeI => true,
            sys::videoFrameTypeP | sys::videoFrameTypeIPMixed => false,
            _ => return Ok(Vec::new()), // skipped or invalid: nothing to send
        };
        if data.is_empty() {
            return Ok(Vec::new());
        }
        // An I frame that is not an IDR cannot start decoding; only IDRs count as keyframes.
        let keyframe = keyframe && h264_nal_types(&data).any(|t| t == h264_nal::IDR);
        Ok(vec![EncodedFrame { codec, data, pts, keyframe }])
    }

    fn request_keyframe(&mut self) {
        self.keyframe_pending = true;
    }

    fn set_rate(&mut self, rate: RateControl) -> Result<(), RateError> {
        let codec = VideoCodec::H264;
        check_rate(codec, rate)?;
        if let Some(encoder) = self.encoder.as_mut() {
            let lib = |detail| RateError::Library { codec, library: LIBRARY, detail };
            let bps = rate.bitrate_bps as i32;
            if rate.bitrate_bps > self.max_bitrate {
                // The layer's maximum bounds its target (WelsBitRateVerification): raise both
                // the stream's and the layer's before raising the target.
                for layer in [sys::SPATIAL_LAYER_ALL, sys::SPATIAL_LAYER_0] {
                    let mut max = sys::SBitrateInfo { iLayer: layer, iBitrate: bps };
                    // SAFETY: MAX_BITRATE takes an SBitrateInfo.
                    unsafe { encoder.set_option(sys::ENCODER_OPTION_MAX_BITRATE, &mut max) }.map_err(lib)?;
                }
                self.max_bitrate = rate.bitrate_bps;
            }
            let mut target = sys::SBitrateInfo { iLayer: sys::SPATIAL_LAYER_ALL, iBitrate: bps };
            // SAFETY: BITRATE takes an SBitrateInfo.
            unsafe { encoder.set_option(sys::ENCODER_OPTION_BITRATE, &mut target) }.map_err(lib)?;
            if rate.frame_rate != self.config.rate.frame_rate {
                let mut fps = rate.frame_rate as f32;
                // SAFETY: FRAME_RATE takes a float.
                unsafe { encoder.set_option(sys::ENCODER_OPTION_FRAME_RATE, &mut fps) }.map_err(lib)?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecodeError, Decoded, DecoderOptions, EncoderConfig, VideoCodec, bitstream, new_decoder, new_software_encoder};
    use mcu_media::{PixelFormat, Rgb, testsrc};

    #[test]
    fn an_sps_announcing_a_huge_picture_is_refused_and_decoding_goes_on() {
        let mut enc = new_software_encoder(VideoCodec::H264, &EncoderConfig::realtime(500_000, 30.0)).unwrap();
        let frame = testsrc::frame(&testsrc::Pattern::Solid(Rgb(200, 40, 40)), PixelFormat::I420, 640, 360, Duration::ZERO);
        let key = enc.encode(&frame).unwrap().remove(0);
        assert_eq!(bitstream::h264_sps_size(&key.data), Some((640, 368)), "the encoder's own SPS: 23 macroblock rows");
        let mut dec = new_decoder(VideoCodec::H264, &DecoderOptions::default()).unwrap();
        let mut forged = bitstream::tests::sps(512, 512);
        forged.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        match dec.decode(&forged, Duration::from_millis(1)) {
            Err(DecodeError::Unsupported { detail, .. }) => assert!(detail.contains("8192x8192"), "{detail}"),
            other => panic!("a 8192x8192 SPS must be refused, got {other:?}"),
        }
        assert!(matches!(dec.decode(&key.data, Duration::from_millis(40)), Ok(Decoded::Frame(f)) if f.width == 640), "the next real keyframe decodes");
    }

    /// What a constrained-baseline stream's slice headers say of the deblocking filter
    /// (H.264 §7.3.3: `disable_deblocking_filter_idc`, 0 when the PPS leaves it out), for the
    /// stream's own SPS and PPS (no frame cropping of the fields read here matters).
    struct SliceHeaders {
        log2_max_frame_num: u32,
        poc_type: u32,
        log2_max_poc_lsb: u32,
        deblocking_control: bool,
    }

    impl SliceHeaders {
        fn from_keyframe(unit: &[u8]) -> SliceHeaders {
            let sps = bitstream::h264_sps(unit).expect("the keyframe's SPS");
            assert_eq!(sps.profile, 66, "baseline");
            assert_ne!(sps.pic_order_cnt_type, 1, "openh264 uses POC types 0 and 2");
            let (log2_max_frame_num, poc_type, log2_max_poc_lsb) = (sps.log2_max_frame_num, sps.pic_order_cnt_type, sps.log2_max_poc_lsb);
            let pps = bitstream::rbsp(bitstream::annexb_nal_units(unit).find(|n| n[0] & 0x1f == h264_nal::PPS).expect("the keyframe's PPS"));
            let mut r = bitstream::Bits { data: &pps[1..], pos: 0 };
            r.ue().unwrap(); // pps id
            r.ue().unwrap(); // sps id
            assert_eq!(r.bit(), Some(0), "CAVLC");
            r.bit().unwrap(); // bottom_field_pic_order_in_frame_present
            assert_eq!(r.ue(), Some(0), "one slice group");
            r.ue().unwrap();
            r.ue().unwrap();
            r.bits(3).unwrap(); // weighted prediction flags
            r.se().unwrap();
            r.se().unwrap();
            r.se().unwrap();
            let deblocking_control = r.bit() == Some(1);
            SliceHeaders { log2_max_frame_num, poc_type, log2_max_poc_lsb, deblocking_control }
        }

        /// `disable_deblocking_filter_idc` of every I or P slice in `unit`.
        fn deblocking(&self, unit: &[u8]) -> Vec<u32> {
            let mut idcs = Vec::new();
            for nal in bitstream::annexb_nal_units(unit) {
                let (ref_idc, kind) = (nal[0] >> 5, nal[0] & 0x1f);
                if kind != 1 && kind != h264_nal::IDR {
                    continue;
                }
                let data = bitstream::rbsp(nal);
                let mut r = bitstream::Bits { data: &data[1..], pos: 0 };
                r.ue().unwrap(); // first_mb_in_slice
                let slice_type = r.ue().unwrap() % 5;
                r.ue().unwrap(); // pps id
                r.bits(self.log2_max_frame_num).unwrap();
                if kind == h264_nal::IDR {
                    r.ue().unwrap(); // idr_pic_id
                }
                if self.poc_type == 0 {
                    r.bits(self.log2_max_poc_lsb).unwrap();
                }
                if slice_type == 0 {
                    // P: num_ref_idx_active_override_flag, then ref_pic_list_modification
                    if r.bit() == Some(1) {
                        r.ue().unwrap();
                    }
                    if r.bit() == Some(1) {
                        while r.ue().unwrap() != 3 {
                            r.ue().unwrap();
                        }
                    }
                }
                if ref_idc != 0 {
                    if kind == h264_nal::IDR {
                        r.bits(2).unwrap();
                    } else if r.bit() == Some(1) {
                        loop {
                            match r.ue().unwrap() {
                                0 => break,
                                3 => {
                                    r.ue().unwrap();
                                    r.ue().unwrap();
                                }
                                _ => {
                                    r.ue().unwrap();
                                }
                            }
                        }
                    }
                }
                r.se().unwrap(); // slice_qp_delta
                idcs.push(if self.deblocking_control { r.ue().unwrap() } else { 0 });
            }
            idcs
        }
    }

    #[test]
    fn the_encoder_leaves_the_deblocking_filter_off_and_its_pictures_hold_up() {
        // x264 `ultrafast` turns the in-loop filter off too: it saves ~7-10 % of the encode.
        let mut enc = new_software_encoder(VideoCodec::H264, &EncoderConfig::realtime(2_000_000, 30.0)).unwrap();
        let mut dec = new_decoder(VideoCodec::H264, &DecoderOptions::default()).unwrap();
        let mut headers = None;
        let (mut slices, mut worst_psnr) = (0, f64::MAX);
        for i in 0..15u32 {
            let pts = Duration::from_millis(i as u64 * 33);
            let frame = testsrc::frame(&testsrc::Pattern::Card { color: Rgb(200, 90, 40), label: i }, PixelFormat::I420, 1280, 720, pts);
            for unit in enc.encode(&frame).unwrap() {
                let h = headers.get_or_insert_with(|| SliceHeaders::from_keyframe(&unit.data));
                let idcs = h.deblocking(&unit.data);
                assert!(!idcs.is_empty() && idcs.iter().all(|&idc| idc == 1), "frame {i}: disable_deblocking_filter_idc {idcs:?}");
                slices += idcs.len();
                if let Ok(Decoded::Frame(f)) = dec.decode(&unit.data, pts) {
                    worst_psnr = worst_psnr.min(crate::quality::psnr_y(&frame, &f).unwrap());
                }
            }
        }
        assert!(slices >= 15, "{slices} slices");
        assert!(worst_psnr > 30.0, "PSNR {worst_psnr:.1} dB at 2 Mbit/s");
    }

    #[test]
    fn size_limited_slices_keep_every_nal_unit_under_the_limit_and_decode() {
        // packetization-mode 0 receivers (SIP phones) take one NAL unit per packet.
        let config = EncoderConfig { max_nal_size: Some(1100), ..EncoderConfig::realtime(1_500_000, 30.0) };
        let mut enc = new_software_encoder(VideoCodec::H264, &config).unwrap();
        let mut dec = new_decoder(VideoCodec::H264, &DecoderOptions::default()).unwrap();
        let mut worst_psnr = f64::MAX;
        for i in 0..10u32 {
            let pts = Duration::from_millis(i as u64 * 33);
            let frame = testsrc::frame(&testsrc::Pattern::Card { color: Rgb(40, 120, 200), label: i }, PixelFormat::I420, 640, 360, pts);
            for unit in enc.encode(&frame).unwrap() {
                let nals: Vec<&[u8]> = bitstream::annexb_nal_units(&unit.data).collect();
                if i == 0 {
                    assert!(nals.len() > 3, "a 640x360 keyframe at 1.5 Mbit/s needs several slices, got {}", nals.len());
                }
                for n in &nals {
                    assert!(n.len() <= 1100, "NAL unit of {} bytes", n.len());
                }
                if let Ok(Decoded::Frame(f)) = dec.decode(&unit.data, pts) {
                    worst_psnr = worst_psnr.min(crate::quality::psnr_y(&frame, &f).unwrap());
                }
            }
        }
        assert!(worst_psnr > 28.0, "PSNR {worst_psnr:.1} dB");
    }
}
