package dev.egressproxy.testing;

import java.net.InetAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.Assumptions;

/**
 * A network namespace that forwards TCP back to this host and drops a share of the packets it
 * forwards: a lossy link for tests on kernels without the {@code netem} qdisc. A veth pair joins
 * the host ({@link #hostAddress}) and the namespace ({@link #namespaceAddress}, in a private
 * {@code 10.213.x.0/30}); inside the namespace, a connection to {@code namespaceAddress:port} is
 * DNATed to {@code hostAddress:port} and SNATed to the namespace's address, so it crosses the veth
 * twice, and {@code iptables -m statistic --mode random} drops the given share of the forwarded
 * packets (data and ACKs, both ways). Needs root, {@code ip} and {@code iptables}; {@link #create}
 * skips the test (JUnit assumption) when any is missing. Every rule lives in the namespace, so
 * {@link #close} (deleting the namespace, which removes the veth pair too) leaves nothing behind.
 */
public final class LossyNamespace implements AutoCloseable {

    private final String name;
    private final String hostVeth;
    private final InetAddress hostAddress;
    private final InetAddress namespaceAddress;
    private boolean created;

    private LossyNamespace(int id) throws Exception {
        this.name = "egress-loss-" + id;
        this.hostVeth = "egl" + id + "h";
        int subnet = id % 250;
        this.hostAddress = InetAddress.getByName("10.213." + subnet + ".1");
        this.namespaceAddress = InetAddress.getByName("10.213." + subnet + ".2");
    }

    /**
     * Creates the namespace, dropping {@code lossProbability} (0..1) of the forwarded packets; skips
     * the calling test when this machine cannot (not root, no {@code ip} or {@code iptables}; a
     * missing program fails it in CI instead: {@link Required}).
     */
    public static LossyNamespace create(double lossProbability) throws Exception {
        Assumptions.assumeTrue(run("id", "-u").output().trim().equals("0"),
                "needs root to create a network namespace (CI runs as root)");
        Required.program(Processes.onPath("ip"), "needs the ip command (Debian: apt-get install iproute2)");
        Required.program(Processes.onPath("iptables"), "needs the iptables command (Debian: apt-get install iptables)");
        LossyNamespace ns = new LossyNamespace((int) (ProcessHandle.current().pid() % 100_000));
        try {
            ns.setUp(lossProbability);
        } catch (Exception | AssertionError e) {
            ns.close();
            throw e;
        }
        return ns;
    }

    private void setUp(double loss) throws Exception {
        String nsVeth = "egl" + (hostVeth.substring(3, hostVeth.length() - 1)) + "n";
        String host = hostAddress.getHostAddress();
        String inside = namespaceAddress.getHostAddress();
        // A namespace left by a killed run of the same id would make "add" fail: remove it first.
        run("ip", "netns", "del", name);
        must("ip", "netns", "add", name);
        created = true;
        must("ip", "link", "add", hostVeth, "type", "veth", "peer", "name", nsVeth);
        must("ip", "link", "set", nsVeth, "netns", name);
        must("ip", "addr", "add", host + "/30", "dev", hostVeth);
        must("ip", "link", "set", hostVeth, "up");
        must("ip", "-n", name, "addr", "add", inside + "/30", "dev", nsVeth);
        must("ip", "-n", name, "link", "set", nsVeth, "up");
        must("ip", "-n", name, "link", "set", "lo", "up");
        must("ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
        must("ip", "netns", "exec", name, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-d", inside,
                "-j", "DNAT", "--to-destination", host);
        must("ip", "netns", "exec", name, "iptables", "-t", "nat", "-A", "POSTROUTING", "-p", "tcp", "-d", host,
                "-j", "SNAT", "--to-source", inside);
        must("ip", "netns", "exec", name, "iptables", "-A", "FORWARD", "-m", "statistic", "--mode", "random",
                "--probability", String.format(Locale.ROOT, "%.4f", loss), "-j", "DROP");
    }

    /** This host's end of the veth pair: listen here. */
    public InetAddress hostAddress() {
        return hostAddress;
    }

    /** Connect here: the namespace forwards to the same port on {@link #hostAddress}, losing packets. */
    public InetAddress namespaceAddress() {
        return namespaceAddress;
    }

    /** Packets the loss rule has dropped so far. */
    public long dropped() throws Exception {
        String out = must("ip", "netns", "exec", name, "iptables", "-L", "FORWARD", "-v", "-n", "-x").output();
        for (String line : out.split("\n")) {
            if (line.contains("statistic")) {
                return Long.parseLong(line.trim().split("\\s+")[0]);
            }
        }
        throw new IllegalStateException("no loss rule in:\n" + out);
    }

    @Override
    public void close() throws Exception {
        if (created) {
            // Takes the veth pair (its end is inside) and every iptables rule with it.
            run("ip", "netns", "del", name);
            created = false;
        }
        run("ip", "link", "del", hostVeth);
    }

    private static Processes.Result run(String... command) throws Exception {
        return Processes.run(List.of(command), null, 30);
    }

    private static Processes.Result must(String... command) throws Exception {
        Processes.Result r = run(command);
        if (r.exitCode() != 0) {
            throw new IllegalStateException(String.join(" ", new ArrayList<>(List.of(command))) + " failed ("
                    + r.exitCode() + "): " + r.output());
        }
        return r;
    }
}
