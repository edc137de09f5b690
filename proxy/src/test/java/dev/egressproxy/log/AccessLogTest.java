package dev.egressproxy.log;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.Json;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.Map;
import org.junit.jupiter.api.Test;

class AccessLogTest {

    private static AccessRecord deniedConnect() {
        return new AccessRecord("7-1", new InetSocketAddress("10.0.0.5", 40000))
                .method("CONNECT").target("cdn02.quay.io:443")
                .decision("denied", "host_not_allowlisted", "-").status(403);
    }

    private static AccessRecord forwarded() {
        AccessRecord r = new AccessRecord("8-2", new InetSocketAddress("10.0.0.6", 40001))
                .method("GET").target("registry.redhat.io:80").url("http://registry.redhat.io/v2/a\"b")
                .decision("allowed", "host_allowlisted", "registry.redhat.io").status(302)
                .upstream(new InetSocketAddress("203.0.113.9", 80));
        r.addBytesDown(120);
        return r;
    }

    @Test
    void textLineCarriesEveryFieldAsKeyValue() {
        assertThat(AccessLog.text(deniedConnect(), 3)).isEqualTo("id=7-1 client=10.0.0.5:40000 user=- method=CONNECT "
                + "target=cdn02.quay.io:443 decision=denied reason=host_not_allowlisted rule=- status=403 upstream=- "
                + "error=- bytes_up=0 bytes_down=0 duration_ms=3");
    }

    @Test
    void jsonLineIsOneEscapedObject() {
        String json = AccessLog.json(forwarded(), 12);
        assertThat(json).startsWith("{\"ts\":\"").endsWith("\"duration_ms\":12}")
                .contains("\"url\":\"http://registry.redhat.io/v2/a\\\"b\"")
                .contains("\"status\":302,\"upstream\":\"203.0.113.9:80\"")
                .contains("\"bytes_down\":120");
    }

    @Test
    void jsonEscapesEveryControlCharacterAndDelSoALineIsOneParsableObject() {
        String hostile = "http://h/\n{\"x\":1}\r\t\u0001\u007f\\end\u00e9";
        AccessRecord r = forwarded().url(hostile);
        String json = AccessLog.json(r, 4);
        assertThat(json).doesNotContain("\n").doesNotContain("\r").doesNotContain("\u007f").doesNotContain("\u0001")
                .contains("\\u007F").contains("\\u0001");
        @SuppressWarnings("unchecked")
        Map<String, Object> parsed = (Map<String, Object>) Json.parse(json);
        assertThat(parsed.get("url")).isEqualTo(hostile);
        assertThat(parsed.get("status")).isEqualTo(302L);
        assertThat(parsed.get("duration_ms")).isEqualTo(4L);
    }

    @Test
    void squidLineFollowsSquidsNativeLayout() {
        String denied = AccessLog.squid(deniedConnect(), 3);
        assertThat(denied).matches("\\d+\\.\\d{3} +3 10\\.0\\.0\\.5 TCP_DENIED/403 0 CONNECT cdn02\\.quay\\.io:443 - HIER_NONE/- -");
        String miss = AccessLog.squid(forwarded(), 12);
        assertThat(miss).matches("\\d+\\.\\d{3} +12 10\\.0\\.0\\.6 TCP_MISS/302 120 GET http://registry\\.redhat\\.io/v2/a\"b - "
                + "HIER_DIRECT/203\\.0\\.113\\.9 -");
    }

    private static AccessRecord tunnel(String sni, String check, String error) {
        AccessRecord r = new AccessRecord("9-1", new InetSocketAddress("10.0.0.7", 40002))
                .method("CONNECT").target("cdn.quay.io:443")
                .decision("allowed", "host_allowlisted", "cdn.quay.io").status(200)
                .upstream(new InetSocketAddress("203.0.113.10", 443)).sniCheck(sni, check);
        return error == null ? r : r.error(error);
    }

    @Test
    void checkedTunnelCarriesTheServerNameAndTheCheckResultInTextAndJson() {
        AccessRecord reported = tunnel("www.fronted.example", "sni_mismatch", null);
        assertThat(AccessLog.text(reported, 5)).contains(" error=- sni=www.fronted.example sni_check=sni_mismatch bytes_up=0 ");
        assertThat(AccessLog.json(reported, 5))
                .contains("\"error\":\"-\",\"sni\":\"www.fronted.example\",\"sni_check\":\"sni_mismatch\",\"bytes_up\":0");
        assertThat(AccessLog.text(tunnel(null, "not_tls", "not_tls"), 5)).contains(" error=not_tls sni=- sni_check=not_tls ");
        assertThat(AccessLog.text(deniedConnect(), 3)).doesNotContain("sni");
        assertThat(AccessLog.json(forwarded(), 3)).doesNotContain("sni");
    }

    @Test
    void squidLineOfATunnelTheCheckClosedSaysDenied() {
        assertThat(AccessLog.squid(tunnel(null, "sni_mismatch", "sni_mismatch"), 4)).contains(" TCP_DENIED/200 0 CONNECT ");
        assertThat(AccessLog.squid(tunnel("cdn.quay.io", "ok", null), 4)).contains(" TCP_TUNNEL/200 0 CONNECT ");
        assertThat(AccessLog.squid(tunnel("www.fronted.example", "sni_mismatch", null), 4)).contains(" TCP_TUNNEL/200 ");
    }

    @Test
    void aTunnelsEndIsTheLastFieldAndOtherLinesHaveNone() {
        AccessRecord reset = tunnel(null, "-", null).end("upstream_reset", "TCP_TUNNEL_ABORTED");
        assertThat(AccessLog.text(reset, 5)).endsWith(" duration_ms=5 end=upstream_reset");
        assertThat(AccessLog.json(reset, 5)).endsWith("\"duration_ms\":5,\"end\":\"upstream_reset\"}");
        assertThat(AccessLog.text(deniedConnect(), 3)).doesNotContain("end=");
        assertThat(AccessLog.json(forwarded(), 3)).doesNotContain("\"end\"");
    }

    @Test
    void squidCodeOfATunnelSaysWhetherItWasAbortedOrTimedOut() {
        assertThat(AccessLog.squid(tunnel(null, "-", null).end("client_closed", "TCP_TUNNEL"), 4))
                .contains(" TCP_TUNNEL/200 0 CONNECT ");
        assertThat(AccessLog.squid(tunnel(null, "-", null).end("client_reset", "TCP_TUNNEL_ABORTED"), 4))
                .contains(" TCP_TUNNEL_ABORTED/200 0 CONNECT ");
        assertThat(AccessLog.squid(tunnel(null, "-", null).end("idle_timeout", "TCP_TUNNEL_TIMEDOUT"), 4))
                .contains(" TCP_TUNNEL_TIMEDOUT/200 0 CONNECT ");
        // The SNI check's refusal stays a denial.
        assertThat(AccessLog.squid(tunnel(null, "sni_mismatch", "sni_mismatch").end("sni_refused", "TCP_DENIED"), 4))
                .contains(" TCP_DENIED/200 0 CONNECT ");
    }

    @Test
    void anSniProblemIsAProblemWhetherOrNotTheTunnelWasClosed() {
        assertThat(tunnel("www.fronted.example", "sni_mismatch", null).sniProblem()).isTrue();
        assertThat(tunnel("cdn.quay.io", "ok", null).sniProblem()).isFalse();
        assertThat(tunnel(null, "no_bytes", null).sniProblem()).isFalse();
        assertThat(deniedConnect().sniProblem()).isFalse();
    }

    @Test
    void ipv6AddressesAreWrittenCompressedWithBracketsBeforeThePort() throws Exception {
        AccessRecord r = new AccessRecord("9-1", new InetSocketAddress(InetAddress.getByName("0:0:0:0:0:0:0:1"), 40002))
                .method("CONNECT").target("[2001:db8::7]:443")
                .decision("allowed", "cidr_allowlisted", "2001:db8::/32").status(200)
                .upstream(new InetSocketAddress(InetAddress.getByName("2001:db8:0:0:0:0:0:7"), 443));

        assertThat(AccessLog.text(r, 1)).contains(" client=[::1]:40002 ").contains(" upstream=[2001:db8::7]:443 ")
                .doesNotContain("0:0:0:0");
        assertThat(AccessLog.json(r, 1)).contains("\"client\":\"[::1]:40002\"").contains("\"upstream\":\"[2001:db8::7]:443\"");
        // Squid writes bare addresses, without brackets or port.
        assertThat(AccessLog.squid(r, 1)).matches("\\d+\\.\\d{3} +1 ::1 TCP_TUNNEL/200 0 CONNECT \\[2001:db8::7\\]:443 - "
                + "HIER_DIRECT/2001:db8::7 -");
    }

    @Test
    void aRecordIsWrittenOnce() {
        AccessRecord r = deniedConnect();
        assertThat(r.markLogged()).isTrue();
        assertThat(r.markLogged()).isFalse();
    }

    @Test
    void certificateIdentitiesAreOneTextTokenAndAJsonArray() {
        AccessRecord r = AccessRecord.of("10-1", new dev.egressproxy.guard.ClientIdentity(
                new InetSocketAddress("10.0.0.8", 40003), java.util.List.of("CN=Doe, John", "spiffe://example.org/ns/build/sa/builder",
                        "DNS:builder.internal")))
                .method("CONNECT").target("cdn.quay.io:443").decision("allowed", "host_allowlisted", "cdn.quay.io").status(200);

        assertThat(AccessLog.text(r, 1)).startsWith("id=10-1 client=10.0.0.8:40003 "
                + "identity=CN=Doe%2C%20John,spiffe://example.org/ns/build/sa/builder,DNS:builder.internal user=- method=CONNECT ");
        assertThat(AccessLog.json(r, 1)).contains("\"client\":\"10.0.0.8:40003\",\"identity\":[\"CN=Doe, John\","
                + "\"spiffe://example.org/ns/build/sa/builder\",\"DNS:builder.internal\"],\"user\":\"-\",\"method\"");
        assertThat(AccessLog.text(deniedConnect(), 3)).doesNotContain("identity");
        assertThat(AccessLog.json(deniedConnect(), 3)).doesNotContain("identity");
    }
}
