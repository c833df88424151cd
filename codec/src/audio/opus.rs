//! Opus at 48 kHz, mono or stereo, 10 or 20 ms frames, with in-band FEC and DTX settable.

use ::opus as libopus;

use super::{AudioConfigureError, AudioDecodeError, AudioEncodeError, AudioOpenError};

/// The only sample rate we run Opus at (WebRTC's).
pub const OPUS_RATE: u32 = 48_000;
/// Largest packet we produce (RFC 6716 allows 1275 bytes per frame).
const MAX_PACKET: usize = 1500;
/// Longest audio one packet may decode to: 120 ms at 48 kHz.
const MAX_SAMPLES_PER_CHANNEL: usize = 5760;

/// Channel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusChannels {
    /// One channel.
    Mono,
    /// Two channels, interleaved left/right.
    Stereo,
}

impl OpusChannels {
    /// 1 or 2.
    pub fn count(self) -> usize {
        match self {
            OpusChannels::Mono => 1,
            OpusChannels::Stereo => 2,
        }
    }

    fn lib(self) -> libopus::Channels {
        match self {
            OpusChannels::Mono => libopus::Channels::Mono,
            OpusChannels::Stereo => libopus::Channels::Stereo,
        }
    }
}

/// Frame duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusFrameDuration {
    /// 10 ms (480 samples per channel).
    Ms10,
    /// 20 ms (960 samples per channel), WebRTC's default.
    Ms20,
}

impl OpusFrameDuration {
    /// Samples per channel in one frame at 48 kHz.
    pub fn samples_per_channel(self) -> usize {
        match self {
            OpusFrameDuration::Ms10 => 480,
            OpusFrameDuration::Ms20 => 960,
        }
    }
}

/// What the encoder tunes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusApplication {
    /// Speech intelligibility (libopus `VOIP`): what conferencing uses for voices.
    Voice,
    /// Fidelity to any input (libopus `AUDIO`): music, screen-share sound, stereo mixes.
    Music,
}

/// Settings of an Opus encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// Mono or stereo.
    pub channels: OpusChannels,
    /// 10 or 20 ms.
    pub frame: OpusFrameDuration,
    /// Voice or music tuning (fixed at creation).
    pub application: OpusApplication,
    /// Target bitrate (6 000 ..= 510 000 bps).
    pub bitrate_bps: u32,
    /// In-band forward error correction: each packet also carries a low-rate copy of the
    /// previous frame, which [`OpusDecoder::decode_fec`] recovers when that frame is lost.
    pub fec: bool,
    /// Expected packet loss in percent (0..=100); FEC only spends bits when this is above 0.
    pub expected_loss_pct: u8,
    /// Discontinuous transmission: in silence the encoder sends a tiny packet only every
    /// 400 ms ([`OpusEncoder::is_dtx_packet`] tells those apart).
    pub dtx: bool,
    /// Encoder complexity, 0..=10 (libopus' default 10). SILK's delayed-decision quantiser
    /// keeps 4 candidate states at 8 and above, 3 at 6–7, 2 at 2–5 (roughly halving its time
    /// against 10) and is replaced by the plain quantiser only at 0–1.
    pub complexity: u8,
}

impl OpusConfig {
    /// WebRTC's voice defaults: 20 ms, FEC on assuming 10 % loss, DTX off.
    pub fn voice(channels: OpusChannels, bitrate_bps: u32) -> OpusConfig {
        OpusConfig {
            channels,
            frame: OpusFrameDuration::Ms20,
            application: OpusApplication::Voice,
            bitrate_bps,
            fec: true,
            expected_loss_pct: 10,
            dtx: false,
            complexity: 10,
        }
    }

    /// Music defaults: 20 ms, music tuning, FEC and DTX off.
    pub fn music(channels: OpusChannels, bitrate_bps: u32) -> OpusConfig {
        OpusConfig { application: OpusApplication::Music, fec: false, expected_loss_pct: 0, ..OpusConfig::voice(channels, bitrate_bps) }
    }
}

fn opus_err(e: libopus::Error) -> String {
    format!("{}: {}", e.function(), e.description())
}

/// An Opus encoder (libopus).
pub struct OpusEncoder {
    enc: libopus::Encoder,
    config: OpusConfig,
    buf: Vec<u8>,
}

impl OpusEncoder {
    /// An encoder with `config`.
    pub fn new(config: OpusConfig) -> Result<OpusEncoder, AudioOpenError> {
        let application = match config.application {
            OpusApplication::Voice => libopus::Application::Voip,
            OpusApplication::Music => libopus::Application::Audio,
        };
        let enc = libopus::Encoder::new(OPUS_RATE, config.channels.lib(), application).map_err(|e| AudioOpenError::Opus(opus_err(e)))?;
        let mut e = OpusEncoder { enc, config, buf: vec![0; MAX_PACKET] };
        e.apply(config).map_err(|e| AudioOpenError::InvalidConfig(e.to_string()))?;
        Ok(e)
    }

    fn apply(&mut self, c: OpusConfig) -> Result<(), AudioConfigureError> {
        if !(6_000..=510_000).contains(&c.bitrate_bps) {
            return Err(AudioConfigureError::Invalid(format!("bitrate {} bps is outside 6000..=510000", c.bitrate_bps)));
        }
        if c.complexity > 10 {
            return Err(AudioConfigureError::Invalid(format!("complexity {} is above 10", c.complexity)));
        }
        if c.expected_loss_pct > 100 {
            return Err(AudioConfigureError::Invalid(format!("expected loss {} % is above 100", c.expected_loss_pct)));
        }
        let op = |e| AudioConfigureError::Opus(opus_err(e));
        self.enc.set_bitrate(libopus::Bitrate::Bits(c.bitrate_bps as i32)).map_err(op)?;
        self.enc.set_inband_fec(c.fec).map_err(op)?;
        self.enc.set_packet_loss_perc(c.expected_loss_pct as i32).map_err(op)?;
        self.enc.set_dtx(c.dtx).map_err(op)?;
        self.enc.set_complexity(c.complexity as i32).map_err(op)?;
        self.config = c;
        Ok(())
    }

    /// The settings in force.
    pub fn config(&self) -> OpusConfig {
        self.config
    }

    /// Samples (all channels) one call to [`OpusEncoder::encode`] takes.
    pub fn frame_len(&self) -> usize {
        self.config.frame.samples_per_channel() * self.config.channels.count()
    }

    /// Changes bitrate, FEC, expected loss or DTX from the next frame on (channels, frame
    /// duration and application are fixed at creation: a change there is refused).
    pub fn configure(&mut self, config: OpusConfig) -> Result<(), AudioConfigureError> {
        if config.channels != self.config.channels || config.frame != self.config.frame || config.application != self.config.application {
            return Err(AudioConfigureError::Invalid("channels, frame duration and application are fixed; create a new encoder".into()));
        }
        let previous = self.config;
        self.apply(config).inspect_err(|_| {
            let _ = self.apply(previous);
        })
    }

    /// Encodes one frame of interleaved samples into one packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, AudioEncodeError> {
        let expected = self.frame_len();
        if pcm.len() != expected {
            return Err(AudioEncodeError::FrameLength {
                got: pcm.len(),
                expected,
                channels: self.config.channels.count(),
                per_channel: self.config.frame.samples_per_channel(),
            });
        }
        let n = self.enc.encode(pcm, &mut self.buf).map_err(|e| AudioEncodeError::Opus(opus_err(e)))?;
        Ok(self.buf[..n].to_vec())
    }

    /// True for the 1–2 byte packets DTX produces in silence (the sender may skip them).
    pub fn is_dtx_packet(packet: &[u8]) -> bool {
        packet.len() <= 2
    }
}

/// An Opus decoder (48 kHz).
pub struct OpusDecoder {
    dec: libopus::Decoder,
    channels: OpusChannels,
    buf: Vec<i16>,
}

impl OpusDecoder {
    /// A decoder producing `channels` channels (a mono packet is upmixed, a stereo one
    /// downmixed, by libopus).
    pub fn new(channels: OpusChannels) -> Result<OpusDecoder, AudioOpenError> {
        let dec = libopus::Decoder::new(OPUS_RATE, channels.lib()).map_err(|e| AudioOpenError::Opus(opus_err(e)))?;
        Ok(OpusDecoder { dec, channels, buf: vec![0; MAX_SAMPLES_PER_CHANNEL * 2] })
    }

    fn run(&mut self, packet: &[u8], per_channel: usize, fec: bool) -> Result<Vec<i16>, AudioDecodeError> {
        let ch = self.channels.count();
        let out = &mut self.buf[..per_channel * ch];
        let n = self.dec.decode(packet, out, fec).map_err(|e| AudioDecodeError::Invalid { len: packet.len(), detail: opus_err(e) })?;
        Ok(self.buf[..n * ch].to_vec())
    }

    /// Decodes one packet into interleaved samples.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<i16>, AudioDecodeError> {
        if packet.is_empty() {
            return Err(AudioDecodeError::Invalid { len: 0, detail: "empty packet (use conceal for a lost one)".into() });
        }
        let per_channel =
            libopus::packet::get_nb_samples(packet, OPUS_RATE).map_err(|e| AudioDecodeError::Invalid { len: packet.len(), detail: opus_err(e) })?;
        if per_channel > MAX_SAMPLES_PER_CHANNEL {
            return Err(AudioDecodeError::TooLong { len: packet.len() });
        }
        self.run(packet, MAX_SAMPLES_PER_CHANNEL, false)
    }

    /// Recovers a lost frame of `samples_per_channel` from the FEC data in `next_packet`
    /// (the packet after the lost one); falls back to concealment when it holds none.
    pub fn decode_fec(&mut self, next_packet: &[u8], samples_per_channel: usize) -> Result<Vec<i16>, AudioDecodeError> {
        if next_packet.is_empty() || samples_per_channel == 0 || samples_per_channel > MAX_SAMPLES_PER_CHANNEL {
            return Err(AudioDecodeError::Invalid { len: next_packet.len(), detail: "FEC needs the next packet and a frame length up to 120 ms".into() });
        }
        self.run(next_packet, samples_per_channel, true)
    }

    /// Packet-loss concealment: `samples_per_channel` of audio extrapolated from the past.
    pub fn conceal(&mut self, samples_per_channel: usize) -> Result<Vec<i16>, AudioDecodeError> {
        if samples_per_channel == 0 || samples_per_channel > MAX_SAMPLES_PER_CHANNEL {
            return Err(AudioDecodeError::Invalid { len: 0, detail: format!("cannot conceal {samples_per_channel} samples") });
        }
        self.run(&[], samples_per_channel, false)
    }
}
