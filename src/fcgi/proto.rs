//! FastCGI 1.0 wire constants, record header and fixed-size record bodies.
//!
//! Spec: Open Market, "FastCGI Specification", version 1.0 (1996), sections 3 and 5.

/// The only protocol version there is.
pub const VERSION_1: u8 = 1;
/// Length of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest content length a record header can carry.
pub const MAX_CONTENT_LEN: usize = 0xFFFF;
/// Largest content we put in one padded record: a multiple of 8, so that
/// content plus padding never exceeds 65535 (php-fpm rejects PARAMS records where it does,
/// and writes 0xFFF8-byte records itself).
pub const MAX_PADDED_CONTENT: usize = 0xFFF8;
// 0xFFF8 is the largest multiple of 8 that fits in a record.
const _: () = assert!(MAX_PADDED_CONTENT % 8 == 0 && MAX_PADDED_CONTENT + 8 > MAX_CONTENT_LEN);

/// Request id of management records.
pub const NULL_REQUEST_ID: u16 = 0;
/// Largest name or value length a name-value pair can express (31 bits).
pub const MAX_NV_LEN: usize = 0x7FFF_FFFF;

/// `flags` bit of BEGIN_REQUEST: the application keeps the connection open after the request.
pub const FLAG_KEEP_CONN: u8 = 1;

/// Management variable names (GET_VALUES).
pub const MAX_CONNS: &str = "FCGI_MAX_CONNS";
pub const MAX_REQS: &str = "FCGI_MAX_REQS";
pub const MPXS_CONNS: &str = "FCGI_MPXS_CONNS";

/// Record types.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash)]
#[repr(u8)]
pub enum RecordType {
    BeginRequest = 1,
    AbortRequest = 2,
    EndRequest = 3,
    Params = 4,
    Stdin = 5,
    Stdout = 6,
    Stderr = 7,
    Data = 8,
    GetValues = 9,
    GetValuesResult = 10,
    UnknownType = 11,
}

impl RecordType {
    /// The type for a wire value, `None` for values the spec does not define.
    pub fn from_u8(v: u8) -> Option<RecordType> {
        use RecordType::*;
        Some(match v {
            1 => BeginRequest,
            2 => AbortRequest,
            3 => EndRequest,
            4 => Params,
            5 => Stdin,
            6 => Stdout,
            7 => Stderr,
            8 => Data,
            9 => GetValues,
            10 => GetValuesResult,
            11 => UnknownType,
            _ => return None,
        })
    }

    /// Management records (request id 0).
    pub fn is_management(self) -> bool {
        matches!(self, RecordType::GetValues | RecordType::GetValuesResult | RecordType::UnknownType)
    }

    /// Stream records: a sequence of records ended by an empty one.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            RecordType::Params | RecordType::Stdin | RecordType::Stdout | RecordType::Stderr | RecordType::Data
        )
    }
}

/// Roles of BEGIN_REQUEST.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash, Default)]
#[repr(u16)]
pub enum Role {
    #[default]
    Responder = 1,
    Authorizer = 2,
    Filter = 3,
}

impl Role {
    pub fn from_u16(v: u16) -> Option<Role> {
        match v {
            1 => Some(Role::Responder),
            2 => Some(Role::Authorizer),
            3 => Some(Role::Filter),
            _ => None,
        }
    }
}

/// `protocolStatus` of END_REQUEST.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash)]
pub enum ProtocolStatus {
    RequestComplete,
    CantMpxConn,
    Overloaded,
    UnknownRole,
    /// A value the spec does not define.
    Other(u8),
}

impl ProtocolStatus {
    pub fn from_u8(v: u8) -> ProtocolStatus {
        match v {
            0 => ProtocolStatus::RequestComplete,
            1 => ProtocolStatus::CantMpxConn,
            2 => ProtocolStatus::Overloaded,
            3 => ProtocolStatus::UnknownRole,
            other => ProtocolStatus::Other(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            ProtocolStatus::RequestComplete => 0,
            ProtocolStatus::CantMpxConn => 1,
            ProtocolStatus::Overloaded => 2,
            ProtocolStatus::UnknownRole => 3,
            ProtocolStatus::Other(v) => v,
        }
    }
}

/// A decoded record header.
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub struct Header {
    pub version: u8,
    /// Raw type byte (may be a type the spec does not define).
    pub rtype: u8,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

impl Header {
    /// Encodes the 8 header bytes (reserved byte 0).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_length.to_be_bytes();
        [self.version, self.rtype, id[0], id[1], len[0], len[1], self.padding_length, 0]
    }

    /// Decodes 8 header bytes; no validation beyond layout.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            version: b[0],
            rtype: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_length: u16::from_be_bytes([b[4], b[5]]),
            padding_length: b[6],
        }
    }

    /// Content plus padding: the bytes that follow the header.
    pub fn body_len(&self) -> usize {
        self.content_length as usize + self.padding_length as usize
    }
}

/// Padding that brings `content_len` to a multiple of 8.
pub fn padding_for(content_len: usize) -> u8 {
    ((8 - content_len % 8) % 8) as u8
}

/// Body of BEGIN_REQUEST.
pub fn begin_request_body(role: Role, flags: u8) -> [u8; 8] {
    let r = (role as u16).to_be_bytes();
    [r[0], r[1], flags, 0, 0, 0, 0, 0]
}

/// Body of END_REQUEST.
pub fn end_request_body(app_status: u32, protocol_status: ProtocolStatus) -> [u8; 8] {
    let a = app_status.to_be_bytes();
    [a[0], a[1], a[2], a[3], protocol_status.to_u8(), 0, 0, 0]
}

/// Body of UNKNOWN_TYPE.
pub fn unknown_type_body(rtype: u8) -> [u8; 8] {
    [rtype, 0, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            version: 1,
            rtype: RecordType::Stdout as u8,
            request_id: 0x1234,
            content_length: 0xABCD,
            padding_length: 3,
        };
        let b = h.encode();
        assert_eq!(b, [1, 6, 0x12, 0x34, 0xAB, 0xCD, 3, 0]);
        assert_eq!(Header::decode(&b), h);
        assert_eq!(h.body_len(), 0xABCD + 3);
    }

    #[test]
    fn padding() {
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(1), 7);
        assert_eq!(padding_for(8), 0);
        assert_eq!(padding_for(13), 3);
        assert_eq!(padding_for(MAX_PADDED_CONTENT), 0);
    }

    #[test]
    fn bodies() {
        assert_eq!(begin_request_body(Role::Filter, FLAG_KEEP_CONN), [0, 3, 1, 0, 0, 0, 0, 0]);
        assert_eq!(end_request_body(0x01020304, ProtocolStatus::UnknownRole), [1, 2, 3, 4, 3, 0, 0, 0]);
        assert_eq!(unknown_type_body(42), [42, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn type_values() {
        for v in 0..=255u8 {
            match RecordType::from_u8(v) {
                Some(t) => assert_eq!(t as u8, v),
                None => assert!(v == 0 || v > 11),
            }
        }
        assert!(RecordType::GetValues.is_management());
        assert!(!RecordType::Stdout.is_management());
        assert!(RecordType::Data.is_stream());
        assert!(!RecordType::EndRequest.is_stream());
        for v in 0..=255u8 {
            assert_eq!(ProtocolStatus::from_u8(v).to_u8(), v);
        }
    }
}
