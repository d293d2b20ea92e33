//! A minimal blocking RESP2 client: enough to check readiness, set up a cluster,
//! and write raw (for example deliberately corrupt) bytes in tests.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::TestkitError;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style status.
    Status(String),
    /// `-ERR …`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$…` bulk string (`None` for the nil bulk).
    Bulk(Option<Vec<u8>>),
    /// `*…` array (`None` for the nil array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for statuses and bulk strings.
    #[must_use]
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// One blocking connection.
#[derive(Debug)]
pub struct RawConnection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawConnection {
    /// Connects with a short timeout.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(RawConnection {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one command (arguments as bytes) and reads its reply.
    pub fn command(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&buf)?;
        self.read_reply()
    }

    /// Sends one command of text arguments and returns its reply, turning a Redis
    /// error reply into [`TestkitError::Redis`].
    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply, TestkitError> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match self.command(&bytes)? {
            Reply::Error(e) => Err(TestkitError::Redis(format!("{}: {e}", args.join(" ")))),
            other => Ok(other),
        }
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let line = self.read_line()?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed RESP reply");
        let (tag, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        let num = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match tag {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(num()?),
            "$" => match usize::try_from(num()?) {
                Err(_) => Reply::Bulk(None),
                Ok(len) => {
                    let mut data = vec![0; len + 2];
                    self.reader.read_exact(&mut data)?;
                    data.truncate(len);
                    Reply::Bulk(Some(data))
                }
            },
            "*" => match usize::try_from(num()?) {
                Err(_) => Reply::Array(None),
                Ok(n) => {
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.read_reply()?);
                    }
                    Reply::Array(Some(items))
                }
            },
            _ => return Err(bad()),
        })
    }
}
