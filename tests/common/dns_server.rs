//! A tiny authoritative DNS server for tests: UDP and TCP on one port of
//! 127.0.0.1 (or any address given), answering from a fixed table of
//! A/AAAA/MX/NS/TXT/PTR records, NXDOMAIN for names it does not know,
//! NOERROR without answers for known names without records of the asked
//! type, and, per name, SERVFAIL or no answer at all (a timeout).
//!
//! rostfix programs are pointed at it with `ROSTFIX_DNS_SERVER=IP:PORT`
//! (see src/global/dns.rs); glibc and so Postfix only ask port 53, which
//! [`DnsServer::start_on`] can bind inside a private network namespace.

#![allow(dead_code)]

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, NS, PTR, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// What the server knows.
#[derive(Default, Clone)]
pub struct Zone {
    records: Vec<(String, RData)>,
    servfail: Vec<String>,
    silent: Vec<String>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Name {
    let n = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    Name::from_str(&n).expect("test DNS name")
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }
    pub fn a(mut self, name: &str, addr: &str) -> Zone {
        let rd = match addr.parse::<std::net::IpAddr>().expect("address") {
            std::net::IpAddr::V4(a) => RData::A(A(a)),
            std::net::IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        self.records.push((key(name), rd));
        self
    }
    pub fn mx(mut self, name: &str, pref: u16, host: &str) -> Zone {
        let host = if host.is_empty() {
            Name::root()
        } else {
            fqdn(host)
        };
        self.records
            .push((key(name), RData::MX(MX::new(pref, host))));
        self
    }
    pub fn ns(mut self, name: &str, host: &str) -> Zone {
        self.records.push((key(name), RData::NS(NS(fqdn(host)))));
        self
    }
    pub fn txt(mut self, name: &str, text: &str) -> Zone {
        self.records
            .push((key(name), RData::TXT(TXT::new(vec![text.to_string()]))));
        self
    }
    /// A PTR record for an address (the in-addr.arpa / ip6.arpa name is
    /// made here).
    pub fn ptr(mut self, addr: &str, host: &str) -> Zone {
        let ip: std::net::IpAddr = addr.parse().expect("address");
        let rev = rostfix::global::dns::reverse_name(ip);
        self.records.push((key(&rev), RData::PTR(PTR(fqdn(host)))));
        self
    }
    /// Answer SERVFAIL for every question about this name.
    pub fn servfail(mut self, name: &str) -> Zone {
        self.servfail.push(key(name));
        self
    }
    /// Never answer questions about this name.
    pub fn silent(mut self, name: &str) -> Zone {
        self.silent.push(key(name));
        self
    }

    /// The reply to one query message, or None to stay silent.
    pub fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        let question = q.queries().first()?.clone();
        let name = key(&question.name().to_utf8());
        if self.silent.contains(&name) {
            return None;
        }
        let mut r = Message::new();
        r.set_id(q.id());
        r.set_message_type(MessageType::Response);
        r.set_op_code(q.op_code());
        r.set_authoritative(true);
        r.set_recursion_desired(q.recursion_desired());
        r.set_recursion_available(true);
        r.add_query(question.clone());
        if self.servfail.contains(&name) {
            r.set_response_code(ResponseCode::ServFail);
            return r.to_vec().ok();
        }
        let known: Vec<&RData> = self
            .records
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, d)| d)
            .collect();
        if known.is_empty() {
            r.set_response_code(ResponseCode::NXDomain);
            return r.to_vec().ok();
        }
        for d in known {
            if d.record_type() == question.query_type() || question.query_type() == RecordType::ANY
            {
                r.add_answer(Record::from_rdata(question.name().clone(), 60, d.clone()));
            }
        }
        r.set_response_code(ResponseCode::NoError);
        r.to_vec().ok()
    }
}

/// A running server (threads end with the test process).
pub struct DnsServer {
    pub addr: SocketAddr,
}

impl DnsServer {
    /// Serve `zone` on 127.0.0.1 on a free port (UDP and TCP).
    pub fn start(zone: Zone) -> DnsServer {
        for _ in 0..50 {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(addr) {
                return Self::serve(zone, udp, tcp);
            }
        }
        panic!("no free port for the test DNS server");
    }

    /// Serve `zone` on this address (e.g. 127.0.0.1:53 in a private
    /// network namespace).
    pub fn start_on(zone: Zone, addr: SocketAddr) -> std::io::Result<DnsServer> {
        let udp = UdpSocket::bind(addr)?;
        let tcp = TcpListener::bind(addr)?;
        Ok(Self::serve(zone, udp, tcp))
    }

    fn serve(zone: Zone, udp: UdpSocket, tcp: TcpListener) -> DnsServer {
        let addr = udp.local_addr().unwrap();
        let zone = Arc::new(zone);
        let z = zone.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = z.answer(&buf[..n]) {
                    let _ = udp.send_to(&reply, from);
                }
            }
        });
        std::thread::spawn(move || {
            for s in tcp.incoming() {
                let Ok(mut s) = s else { continue };
                let z = zone.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    loop {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).is_err() {
                            return;
                        }
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut q).is_err() {
                            return;
                        }
                        let Some(reply) = z.answer(&q) else { return };
                        let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&reply);
                        if s.write_all(&out).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        DnsServer { addr }
    }
}
