//! Test support: an HTTP/2 byte stream cut into frames as it goes by, for
//! tests that watch or hold a connection's traffic.

/// One direction of an HTTP/2 connection, read frame by frame.
pub struct Frames {
    unparsed: Vec<u8>,
    /// Bytes still to skip: the client's connection preface.
    preface_left: usize,
}

impl Frames {
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const ACK: u8 = 0x1;
    /// What a client sends before its first frame.
    pub const CLIENT_PREFACE: usize = 24;

    /// The frames of a stream that starts with `preface` bytes to skip.
    pub fn new(preface: usize) -> Self {
        Self { unparsed: Vec::new(), preface_left: preface }
    }

    /// Takes the next `bytes` and calls `frame(type, flags, payload)` for
    /// each frame they complete.
    pub fn feed(&mut self, bytes: &[u8], mut frame: impl FnMut(u8, u8, &[u8])) {
        self.unparsed.extend_from_slice(bytes);
        let preface = self.preface_left.min(self.unparsed.len());
        self.unparsed.drain(..preface);
        self.preface_left -= preface;
        let mut at = 0;
        while let Some(header) = self.unparsed.get(at..at + 9) {
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let (kind, flags) = (header[3], header[4]);
            let Some(payload) = self.unparsed.get(at + 9..at + 9 + length) else { break };
            frame(kind, flags, payload);
            at += 9 + length;
        }
        self.unparsed.drain(..at);
    }

    /// A SETTINGS frame that sets SETTINGS_MAX_CONCURRENT_STREAMS alone.
    pub fn max_concurrent_streams(max: u32) -> Vec<u8> {
        let mut frame = vec![0, 0, 6, Self::SETTINGS, 0, 0, 0, 0, 0];
        frame.extend_from_slice(&Self::SETTINGS_MAX_CONCURRENT_STREAMS.to_be_bytes());
        frame.extend_from_slice(&max.to_be_bytes());
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_across_reads_after_the_preface() {
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(Frames::max_concurrent_streams(100));
        stream.extend([0, 0, 0, Frames::SETTINGS, Frames::ACK, 0, 0, 0, 0]);
        let mut frames = Frames::new(Frames::CLIENT_PREFACE);
        let mut seen = Vec::new();
        for piece in stream.chunks(7) {
            frames.feed(piece, |kind, flags, payload| seen.push((kind, flags, payload.to_vec())));
        }
        assert_eq!(seen, [(Frames::SETTINGS, 0, vec![0, 3, 0, 0, 0, 100]), (Frames::SETTINGS, Frames::ACK, vec![])]);
    }
}
