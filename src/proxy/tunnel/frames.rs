//! Just enough of WebSocket framing (RFC 6455 §5.2) to know where frames end in a byte
//! stream, and to write a close frame (§5.5.1) at such a boundary.
//!
//! The tunnel never decodes payloads: it reads each frame header to learn the payload
//! length and skips that many bytes. Extensions such as permessage-deflate change
//! payloads, not headers, so boundaries stay exact.

/// Longest frame header: 2 bytes, 8 of extended length, 4 of masking key.
const MAX_HEADER: usize = 14;

/// Close status 1001: the endpoint is going away (a server going down).
const GOING_AWAY: u16 = 1001;

/// Where a stream is in its frame sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCursor {
    /// In a header; `have` bytes of it seen (0: at a boundary).
    Header { bytes: [u8; MAX_HEADER], have: u8 },
    /// In a payload; `left` bytes to its end.
    Payload { left: u64 },
}

impl Default for FrameCursor {
    fn default() -> Self {
        FrameCursor::Header {
            bytes: [0; MAX_HEADER],
            have: 0,
        }
    }
}

impl FrameCursor {
    /// Whether the bytes seen so far end exactly at the end of a frame.
    pub fn at_boundary(&self) -> bool {
        matches!(self, FrameCursor::Header { have: 0, .. })
    }

    /// Moves over `bytes`, which follow what was seen so far.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = self.step(bytes);
            bytes = &bytes[used..];
        }
    }

    /// How many leading bytes of `bytes` finish the frame the cursor is in (0 at a
    /// boundary; all of them when the frame goes on past them).
    pub fn until_boundary(&self, bytes: &[u8]) -> usize {
        if self.at_boundary() {
            return 0;
        }
        let mut cursor = *self;
        let mut used = 0;
        while used < bytes.len() {
            used += cursor.step(&bytes[used..]);
            if cursor.at_boundary() {
                break;
            }
        }
        used
    }

    /// Consumes what belongs to the current header or payload; returns how much.
    fn step(&mut self, bytes: &[u8]) -> usize {
        match self {
            FrameCursor::Payload { left } => {
                let used = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                *left -= used as u64;
                if *left == 0 {
                    *self = FrameCursor::default();
                }
                used
            }
            FrameCursor::Header { bytes: seen, have } => {
                let mut used = 0;
                loop {
                    let have_now = usize::from(*have);
                    let needed = header_len(&seen[..have_now]);
                    if have_now == needed {
                        let payload = payload_len(&seen[..have_now]);
                        *self = if payload == 0 {
                            FrameCursor::default()
                        } else {
                            FrameCursor::Payload { left: payload }
                        };
                        return used;
                    }
                    let Some(&byte) = bytes.get(used) else {
                        return used;
                    };
                    seen[have_now] = byte;
                    *have += 1;
                    used += 1;
                }
            }
        }
    }
}

/// Length of the header that starts with `seen` (as far as `seen` tells: 2 until the
/// second byte is known).
fn header_len(seen: &[u8]) -> usize {
    let Some(&second) = seen.get(1) else {
        return 2;
    };
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// Payload length of a complete header.
fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut len = [0; 8];
            len.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(len)
        }
        short => u64::from(short),
    }
}

/// A close frame as a server sends it (unmasked): status 1001 and `reason`.
pub fn close_frame(reason: &[u8]) -> Vec<u8> {
    let payload = close_payload(reason);
    let mut frame = vec![0x88, payload.len() as u8];
    frame.extend_from_slice(&payload);
    frame
}

/// A close frame as a client sends it (masked with `key`): status 1001 and `reason`.
pub fn masked_close_frame(reason: &[u8], key: [u8; 4]) -> Vec<u8> {
    let payload = close_payload(reason);
    let mut frame = vec![0x88, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    frame
}

/// Status code and reason; the reason is cut so the payload fits a control frame (125).
fn close_payload(reason: &[u8]) -> Vec<u8> {
    let mut payload = GOING_AWAY.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason[..reason.len().min(123)]);
    payload
}

/// A fresh masking key (RFC 6455 asks for an unpredictable one).
pub fn mask_key() -> [u8; 4] {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut key = [0; 4];
    // The system source does not fail on Linux; a zero key is still a valid frame.
    let _ = SystemRandom::new().fill(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with `payload`, as tungstenite's tests spell them.
    fn frame(masked: bool, payload_len: usize) -> Vec<u8> {
        let mut out = vec![0x82];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload_len {
            0..=125 => out.push(mask_bit | payload_len as u8),
            126..=65535 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(payload_len as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        out.extend(std::iter::repeat_n(0xab, payload_len));
        out
    }

    #[test]
    fn finds_boundaries_of_every_length_form_byte_by_byte() {
        for masked in [false, true] {
            for len in [0, 1, 125, 126, 300, 65535, 65536, 70000] {
                let bytes = frame(masked, len);
                let mut cursor = FrameCursor::default();
                for (i, b) in bytes.iter().enumerate() {
                    assert!(
                        !cursor.at_boundary() || i == 0,
                        "boundary too early at {i} (len {len})"
                    );
                    cursor.advance(std::slice::from_ref(b));
                }
                assert!(cursor.at_boundary(), "len {len} masked {masked}");
            }
        }
    }

    #[test]
    fn until_boundary_stops_at_the_end_of_the_current_frame() {
        let mut stream = frame(false, 10);
        stream.extend(frame(true, 200));
        let mut cursor = FrameCursor::default();
        cursor.advance(&stream[..5]);
        assert_eq!(cursor.until_boundary(&stream[5..]), 12 - 5);
        cursor.advance(&stream[5..12]);
        assert!(cursor.at_boundary());
        assert_eq!(cursor.until_boundary(&stream[12..]), 0);
        // Mid-header of the second frame: the whole second frame.
        cursor.advance(&stream[12..13]);
        assert_eq!(cursor.until_boundary(&stream[13..]), stream.len() - 13);
        // A frame that goes on past the bytes at hand: all of them.
        assert_eq!(cursor.until_boundary(&stream[13..20]), 7);
    }

    #[test]
    fn close_frames_parse_as_close_1001() {
        let reason = b"officeswitch restarting";
        let frame = close_frame(reason);
        assert_eq!(frame[0], 0x88);
        assert_eq!(usize::from(frame[1]), 2 + reason.len());
        assert_eq!(&frame[2..4], &1001u16.to_be_bytes());
        let mut cursor = FrameCursor::default();
        cursor.advance(&frame);
        assert!(cursor.at_boundary());

        let key = [9, 8, 7, 6];
        let masked = masked_close_frame(reason, key);
        assert_eq!(masked[1], 0x80 | (2 + reason.len()) as u8);
        let unmasked: Vec<u8> = masked[6..]
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, k)| b ^ k)
            .collect();
        assert_eq!(&unmasked[..2], &1001u16.to_be_bytes());
        assert_eq!(&unmasked[2..], reason);
        let mut cursor = FrameCursor::default();
        cursor.advance(&masked);
        assert!(cursor.at_boundary());
        // Long reasons are cut to fit a control frame.
        assert_eq!(close_frame(&[b'x'; 300]).len(), 2 + 125);
    }
}
