"""The job from Kafka to Kafka over TLS, with the client properties docs/kafka.md ("Security") shows.

Tansu 0.6.0 has no working TLS listener: its command line refuses --cert and --key together, and with
--cert alone it still speaks plaintext. So a loopback proxy terminates TLS, with a certificate
this module makes, in front of Tansu's plain port, and Tansu advertises the proxy's address: every
client, after bootstrapping, comes back through the proxy."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jobs.journey_job import main as run_job
from pipelines.kafka.settings import KafkaUnreachable, load_properties_file
from pipelines.kafka.tools import check_topics, read_topic
from pipelines.tools.simulate import SimulationSpec, write_simulation
from scripts.local_broker import LocalBroker, free_port
from tests.harness import ROOT, kafka_arguments, reference_output

TOPICS = {"signals": 4, "decisions": 4, "journeys": 4, "late": 1, "dead-letter": 1}


# -- certificates ---------------------------------------------------------------------------------
def a_certificate_authority(name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (_valid_for_a_day(x509.CertificateBuilder()).subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key())
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(_key_usage(signs_certificates=True), critical=True)
                   .sign(key, hashes.SHA256()))
    return key, certificate


def a_loopback_server_certificate(authority):
    """Signed by the authority, for 127.0.0.1 and localhost: both clients check the host name."""
    authority_key, authority_certificate = authority
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    certificate = (_valid_for_a_day(x509.CertificateBuilder())
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                   .issuer_name(authority_certificate.subject).public_key(key.public_key())
                   .add_extension(names, critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(_key_usage(signs_certificates=False), critical=True)
                   .sign(authority_key, hashes.SHA256()))
    return key, certificate


def _valid_for_a_day(builder):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (builder.serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))


def _key_usage(signs_certificates: bool):
    return x509.KeyUsage(digital_signature=not signs_certificates, key_cert_sign=signs_certificates,
                         crl_sign=signs_certificates, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False)


def write_pem(path: Path, *, certificate=None, key=None) -> Path:
    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """The CA that signed the broker's certificate, an unrelated CA, and the broker's certificate and key."""
    folder = tmp_path_factory.mktemp("tls")
    authority = a_certificate_authority("journeys test CA")
    server_key, server_certificate = a_loopback_server_certificate(authority)
    return {"ca": write_pem(folder / "ca.pem", certificate=authority[1]),
            "other ca": write_pem(folder / "other-ca.pem", certificate=a_certificate_authority("someone else's CA")[1]),
            "certificate": write_pem(folder / "broker.pem", certificate=server_certificate),
            "key": write_pem(folder / "broker.key", key=server_key)}


# -- the TLS listener ---------------------------------------------------------------------------------
class LoopbackTlsProxy:
    """Accepts TLS on a loopback port of its own and relays the plain bytes to an upstream port."""

    def __init__(self, certificate: Path, key: Path, upstream_port: int):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, key)
        self.upstream_port = upstream_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> "LoopbackTlsProxy":
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context), self._loop).result(10)
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _relay(self, client_reader, client_writer) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass  # the other side went away; closing this one tells its peer
    finally:
        writer.close()


@pytest.fixture(scope="module")
def tls_bootstrap(certificates, tmp_path_factory):
    """The bootstrap address of a Tansu broker that clients reach only through TLS."""
    tansu_port = free_port()
    proxy = LoopbackTlsProxy(certificates["certificate"], certificates["key"], tansu_port).start()
    broker = LocalBroker(tmp_path_factory.mktemp("tansu-tls")).start(tansu_port, advertised_port=proxy.port)
    yield f"127.0.0.1:{proxy.port}"
    broker.stop()
    proxy.stop()


# -- the documented client properties ----------------------------------------------------------------
def documented_tls_properties() -> str:
    """The TLS-only client.properties block of docs/kafka.md, as the page shows it."""
    blocks = re.findall(r"```\n(.*?)```", (ROOT / "docs" / "kafka.md").read_text(), re.DOTALL)
    tls_only = [block for block in blocks if "security.protocol=SSL\n" in block]
    assert len(tls_only) == 1, "docs/kafka.md shows no (or more than one) TLS-only client.properties"
    return tls_only[0]


def client_properties_file(folder: Path, ca: Path) -> Path:
    """The documented properties, with the truststore this test's CA, written as a user would."""
    documented = documented_tls_properties()
    location = re.search(r"^ssl\.truststore\.location=(.*)$", documented, re.MULTILINE).group(1)
    path = folder / "client.properties"
    path.write_text(documented.replace(location, str(ca)))
    return path


@pytest.fixture(scope="module")
def tls_properties(certificates, tmp_path_factory) -> Path:
    return client_properties_file(tmp_path_factory.mktemp("client"), certificates["ca"])


@pytest.fixture(scope="module")
def wrong_ca_properties(certificates, tmp_path_factory) -> Path:
    return client_properties_file(tmp_path_factory.mktemp("wrong-ca"), certificates["other ca"])


def tools(*arguments: str) -> str:
    """python -m pipelines.kafka.tools, as a user runs it; its standard output."""
    done = subprocess.run([sys.executable, "-m", "pipelines.kafka.tools", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def topics(tls_bootstrap, tls_properties):
    """The job's topics, created over TLS with the tools and the documented properties file."""
    names = {name: f"tls-{name}" for name in TOPICS}
    tools("create-topics", "--bootstrap", tls_bootstrap, "--kafka-properties", str(tls_properties),
          *(f"{names[name]}:{partitions}" for name, partitions in TOPICS.items()))
    return names


@pytest.fixture(scope="module")
def signals_file(tmp_path_factory):
    # No signals beyond the watermark bound, so that a Kafka run decides what the reference does.
    path = tmp_path_factory.mktemp("tls-input") / "signals.jsonl"
    write_simulation(SimulationSpec(customers=80, days=10, seed=47, late_rate=0.0), path)
    return path


@pytest.fixture(scope="module")
def stop_offsets(tls_bootstrap, tls_properties, topics, signals_file) -> str:
    """The signals produced over TLS with the tools; the offsets they printed."""
    return tools("produce", "--bootstrap", tls_bootstrap, "--topic", topics["signals"],
                 "--kafka-properties", str(tls_properties), str(signals_file)).strip()


# -- the tests ----------------------------------------------------------------------------------------
def test_the_listener_answers_only_clients_with_the_documented_tls_properties(tls_bootstrap, tls_properties, topics):
    documented = load_properties_file(tls_properties)
    assert check_topics(tls_bootstrap, [topics["signals"]], documented) == {topics["signals"]: 4}
    with pytest.raises(KafkaUnreachable, match="cannot reach the Kafka broker"):
        check_topics(tls_bootstrap, [topics["signals"]], timeout=3)


@pytest.mark.flink
def test_the_job_over_tls_with_the_documented_properties_decides_what_the_reference_decides(
        tls_bootstrap, tls_properties, topics, signals_file, stop_offsets, tmp_path):
    summary_path = tmp_path / "summary.json"
    arguments = kafka_arguments(tls_bootstrap, topics, stop_offsets, summary_path,
                                "--kafka-properties", str(tls_properties))
    assert run_job(arguments) == 0

    properties = load_properties_file(tls_properties)
    keyed = list(read_topic(tls_bootstrap, topics["decisions"], properties))
    decisions = [orjson.loads(value) for _, value in keyed]
    summary = orjson.loads(summary_path.read_bytes())
    expected = reference_output(signals_file, summary["end_clock"]).decisions
    assert expected and {d["decision_id"] for d in decisions} == {d["decision_id"] for d in expected}
    assert len(decisions) == len(expected)
    assert all(key.decode() == decision["journey"] for (key, _), decision in zip(keyed, decisions))
    assert summary["balanced"] is True and summary["events_in"] == len(signals_file.read_bytes().splitlines())


@pytest.mark.flink
@pytest.mark.parametrize("client, message", [
    ("plaintext", "if its listener uses TLS or SASL, set security.protocol"),
    ("trusting another CA", "SslAuthenticationException: SSL handshake failed"),
])
def test_the_driver_refuses_in_seconds_when_tls_settings_are_missing_or_wrong(
        tls_bootstrap, topics, wrong_ca_properties, capsys, client, message):
    options = [] if client == "plaintext" else ["--kafka-properties", str(wrong_ca_properties)]
    started = time.time()
    assert run_job(kafka_arguments(tls_bootstrap, topics, "0:1", None, *options)) == 2
    error = capsys.readouterr().err
    assert f"cannot reach the Kafka broker at {tls_bootstrap}" in error and message in error
    assert time.time() - started < 30
