"""A tiny DNS server for the tests, on 127.0.0.1 (dnspython's message API):
TXT answers from a dict, NXDOMAIN with an SOA for anything else, and names
that answer SERVFAIL or never answer.  It counts the questions it gets."""
import socket
import threading

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

SERVFAIL, SILENT = "servfail", "silent"


class DnsServer:
    def __init__(self):
        self.zone = {}          # name (no trailing dot) -> ([txt strings], ttl) | SERVFAIL | SILENT
        self.asked = []         # names asked, in order
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            self.asked.append(name)
            entry = self.zone.get(name)
            if entry == SILENT:
                continue
            response = dns.message.make_response(query)
            if entry == SERVFAIL:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif entry is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(dns.rrset.from_text(
                    "example.", 300, "IN", "SOA", "ns.example. hostmaster.example. 1 3600 600 86400 300"))
            elif question.rdtype == dns.rdatatype.TXT:
                records, ttl = entry
                response.answer.append(dns.rrset.from_text_list(
                    question.name, ttl, dns.rdataclass.IN, dns.rdatatype.TXT,
                    ['"%s"' % r for r in records]))
            self.sock.sendto(response.to_wire(), peer)

    def close(self):
        self.sock.close()
