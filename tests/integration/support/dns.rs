//! A DNS server on loopback that the test controls: it answers A queries for one name with
//! the addresses the test sets (as a Kubernetes headless Service answers with its ready
//! pods), `NXDOMAIN` for other names, and `SERVFAIL` while told to fail. UDP only, TTL 1.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the server answers now.
#[derive(Debug, Default)]
struct Zone {
    addresses: Vec<Ipv4Addr>,
    failing: bool,
}

/// The DNS server; stops when dropped.
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    name: Name,
    zone: Arc<Mutex<Zone>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Answers for `name` (e.g. `cool.editors.test`) with `addresses`.
    pub async fn start(name: &str, addresses: &[Ipv4Addr]) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS");
        let addr = socket.local_addr().expect("address");
        let name = Name::from_ascii(format!("{name}.")).expect("DNS name");
        let zone = Arc::new(Mutex::new(Zone {
            addresses: addresses.to_vec(),
            failing: false,
        }));
        let task = tokio::spawn(serve(socket, name.clone(), Arc::clone(&zone)));
        DnsServer {
            addr,
            name,
            zone,
            task,
        }
    }

    /// Answers with `addresses` from now on (none: an answer without records).
    pub fn set(&self, addresses: &[Ipv4Addr]) {
        self.zone.lock().expect("zone").addresses = addresses.to_vec();
    }

    /// Answers `SERVFAIL` (true) or the addresses again (false).
    pub fn fail(&self, failing: bool) {
        self.zone.lock().expect("zone").failing = failing;
    }

    /// The name it answers for, without the final dot.
    pub fn name(&self) -> String {
        self.name.to_ascii().trim_end_matches('.').to_string()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, name: Name, zone: Arc<Mutex<Zone>>) {
    let mut buffer = vec![0; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buffer).await else {
            return;
        };
        let Ok(query) = Message::from_vec(&buffer[..n]) else {
            continue;
        };
        let mut reply = Message::new();
        reply
            .set_id(query.id())
            .set_message_type(MessageType::Response)
            .set_op_code(query.op_code())
            .set_recursion_desired(query.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true);
        reply.add_queries(query.queries().to_vec());
        {
            let zone = zone.lock().expect("zone");
            let asked = query.queries().first();
            match asked {
                _ if zone.failing => {
                    reply.set_response_code(ResponseCode::ServFail);
                }
                Some(q) if q.name() == &name => {
                    if q.query_type() == RecordType::A {
                        for ip in &zone.addresses {
                            reply.add_answer(Record::from_rdata(name.clone(), 1, RData::A(A(*ip))));
                        }
                    }
                }
                _ => {
                    reply.set_response_code(ResponseCode::NXDomain);
                }
            }
        }
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}
