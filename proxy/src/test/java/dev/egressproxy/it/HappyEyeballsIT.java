package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestDnsServer;
import dev.egressproxy.testing.TestProxy;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Dual-stack names dialled per RFC 8305 with a real DNS server on loopback, {@code timeouts.connect
 * = 10s} and the default attempt delay of 250 ms. The resolver puts IPv4 first, so the dead path is
 * the IPv4 one: 127.0.0.2 and 127.0.0.3 drop SYNs (a listener whose backlog is full), so a connect
 * there hangs as it does behind a firewall that drops, while ::1 serves. Dialled strictly in turn,
 * the first dead address would hold the connect for half the timeout (5 s).
 */
class HappyEyeballsIT {

    static TcpServer echo6;
    static TcpServer silent2;
    static TcpServer silent3;
    static TcpServer echo4;
    static TcpServer counting6;
    static TestDnsServer dns;
    static TestProxy proxy;
    static int port;
    static int servedPort;

    @BeforeAll
    static void start() throws Exception {
        echo6 = TcpServer.echo(InetAddress.getByName("::1"));
        port = echo6.port();
        silent2 = TcpServer.blackhole(InetAddress.getByName("127.0.0.2"), port);
        silent3 = TcpServer.blackhole(InetAddress.getByName("127.0.0.3"), port);
        echo4 = TcpServer.echo();
        servedPort = echo4.port();
        counting6 = TcpServer.echo(InetAddress.getByName("::1"), servedPort);
        dns = new TestDnsServer()
                .add("dead-v4.test", "127.0.0.2").add("dead-v4.test", "::1")
                .add("two-dead-v4.test", "127.0.0.2").add("two-dead-v4.test", "127.0.0.3")
                .add("two-dead-v4.test", "::1")
                .add("both-serve.test", "127.0.0.1").add("both-serve.test", "::1");
        proxy = TestProxy.start("""
                allowlist.hosts = ["dead-v4.test:%1$d", "two-dead-v4.test:%1$d", "both-serve.test:%2$d"]
                destinations.allow-private = ["127.0.0.0/8", "::1/128"]
                dns { servers = ["%3$s"], query-timeout = 2s }
                timeouts.connect = 10s
                """.formatted(port, servedPort, dns.address()));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        dns.close();
        for (TcpServer s : new TcpServer[] {silent2, silent3, echo6, echo4, counting6}) {
            s.close();
        }
    }

    /** CONNECTs to {@code host:port} and checks an echo through the tunnel; returns how long until the 200. */
    private static Duration tunnel(String host, int port) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            long t0 = System.nanoTime();
            raw.send("CONNECT " + host + ":" + port + " HTTP/1.1\r\n\r\n");
            RawClient.Head head = raw.readHead();
            Duration took = Duration.ofNanos(System.nanoTime() - t0);
            assertThat(head.status()).as(head.statusLine()).isEqualTo(200);
            raw.send("ping through " + host);
            assertThat(new String(raw.readExactly(("ping through " + host).length()), StandardCharsets.US_ASCII))
                    .isEqualTo("ping through " + host);
            return took;
        }
    }

    @Test
    void aDeadFirstFamilyCostsTheAttemptDelayNotTheConnectTimeout() throws Exception {
        int before = echo6.connections.get();

        Duration took = tunnel("dead-v4.test", port);

        // ::1 was dialled 250 ms after 127.0.0.2, beside it: not before (it would answer at once),
        // not after the dead attempt gave up (5 s).
        assertThat(took).isBetween(Duration.ofMillis(240), Duration.ofMillis(2000));
        assertThat(echo6.connections.get()).isEqualTo(before + 1);
        assertThat(proxy.scrapeValue("egress_proxy_upstream_connect_seconds_sum{host=\"dead-v4.test\"}"))
                .isBetween(0.24, 2.0);
    }

    @Test
    void theFamiliesAlternateSoTheOtherFamilyIsSecondNotLast() throws Exception {
        // In the resolver's order ::1 is third: after two dead addresses, 10 s.
        Duration took = tunnel("two-dead-v4.test", port);

        assertThat(took).isBetween(Duration.ofMillis(240), Duration.ofMillis(2000));
    }

    @Test
    void whenTheFirstFamilyConnectsWithinTheAttemptDelayTheOtherIsNeverDialled() throws Exception {
        int v4 = echo4.connections.get();

        Duration took = tunnel("both-serve.test", servedPort);

        assertThat(took).isLessThan(Duration.ofMillis(240));
        assertThat(echo4.connections.get()).isEqualTo(v4 + 1);
        // Past the attempt delay and then some: still no attempt at ::1.
        await().during(Duration.ofMillis(600)).atMost(Duration.ofSeconds(2))
                .until(() -> counting6.connections.get() == 0);
    }
}
