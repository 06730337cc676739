"""A real OpenLDAP ``slapd`` on loopback for the LDAP tests: generated config, CA, users and groups.

Directory (``dc=example,dc=org``)::

    ou=Users   uid=lena (group developers), uid=mark (group admins), uid=dora (disabled:
               employeeType=disabled), uid=gone (deleted by a test), cn=ldap-searcher (service)
    ou=Groups  cn=developers, cn=admins, cn=ldap-group (groupOfNames; memberOf by the overlay)

Started with ``ldap://`` and ``ldaps://`` listeners on free ports, TLS from a CA the tests trust.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.cluster import free_port
from tests.pki import ThrowawayCA

SLAPD = "/usr/sbin/slapd"
BASE = "dc=example,dc=org"
ROOT_DN, ROOT_PW = f"cn=admin,{BASE}", "admin-Pw-ldap"
SEARCHER_DN, SEARCHER_PW = f"cn=ldap-searcher,ou=Users,{BASE}", "searcher-Pw-ldap"
LDAP_USERS = {"lena": "lena-Pw-3f9", "mark": "mark-Pw-77a", "dora": "dora-Pw-1c0", "gone": "gone-Pw-e52",
              "nina": "nina-Pw-0b1"}
GROUPS = {"developers": ["lena", "gone"], "admins": ["mark"], "ldap-group": ["nina"]}
DISABLED = {"dora"}


def write_pki(d: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1/localhost signed by it: (ca, cert, key)."""
    ca = ThrowawayCA("test LDAP CA")
    cert, key = ca.issue("127.0.0.1", ips=("127.0.0.1",), dns=("localhost",))
    paths = (d / "ldap-ca.pem", d / "ldap-server.pem", d / "ldap-server.key")
    for path, data in zip(paths, (ca.pem, cert, key), strict=True):
        path.write_bytes(data)
    paths[2].chmod(0o600)
    return paths


def ldif() -> str:
    out = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n",
           f"dn: ou=Users,{BASE}\nobjectClass: organizationalUnit\nou: Users\n",
           f"dn: ou=Groups,{BASE}\nobjectClass: organizationalUnit\nou: Groups\n",
           f"dn: {SEARCHER_DN}\nobjectClass: person\ncn: ldap-searcher\nsn: searcher\nuserPassword: {SEARCHER_PW}\n"]
    for user, password in LDAP_USERS.items():
        entry = (f"dn: uid={user},ou=Users,{BASE}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\n"
                 f"sn: {user}\nuserPassword: {password}\n")
        if user in DISABLED:
            entry += "employeeType: disabled\n"
        out.append(entry)
    for group, members in GROUPS.items():
        out.append(f"dn: cn={group},ou=Groups,{BASE}\nobjectClass: groupOfNames\ncn: {group}\n"
                   + "".join(f"member: uid={m},ou=Users,{BASE}\n" for m in members))
    return "\n".join(out)


class Slapd:
    def __init__(self, d: Path) -> None:
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = write_pki(d)
        self.port, self.ssl_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        (d / "db").mkdir(exist_ok=True)
        (d / "slapd.conf").write_text(f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {d}/slapd.pid
TLSCACertificateFile {self.ca}
TLSCertificateFile {self.cert}
TLSCertificateKeyFile {self.key}
database mdb
maxsize 16777216
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {d}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
overlay memberof
""")

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> Slapd:
        log = open(self.dir / "slapd.log", "ab")
        self.process = subprocess.Popen(
            [SLAPD, "-d", "0", "-f", str(self.dir / "slapd.conf"),
             "-h", f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.ssl_port}/"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while self.ldap("ldapwhoami", "-x").returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"slapd did not start: {(self.dir / 'slapd.log').read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def ldap(self, tool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([tool, "-H", self.url, *args], input=stdin, capture_output=True, text=True,
                              timeout=30, check=False)

    def modify(self, text: str, tool: str = "ldapmodify") -> None:
        done = self.ldap(tool, "-x", "-D", ROOT_DN, "-w", ROOT_PW, stdin=text)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr}")

    def load(self) -> Slapd:
        self.modify(ldif(), tool="ldapadd")
        return self

    def pause(self) -> None:
        """SIGSTOP: the server accepts connections (the kernel does) but never answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
