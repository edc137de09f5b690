package dev.egressproxy.log;

import dev.egressproxy.guard.ClientIdentity;
import dev.egressproxy.policy.AddressText;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.util.List;

/**
 * What one request or tunnel did, filled in as it goes and written as one access-log line when it
 * ends. Only touched from its connection's event loop.
 */
public final class AccessRecord {

    final long startMillis = System.currentTimeMillis();
    final long startNanos = System.nanoTime();
    final String id;
    final String client;
    /** The client's verified certificate identities (listen.tls with client-ca); empty without one. */
    final List<String> identity;
    /** The user proxy authentication verified for this request, or "-" without one. */
    String user = "-";
    String method = "-";
    String target = "-";
    String url = "-";
    String decision = "-";
    String reason = "-";
    String rule = "-";
    /** The policy that decided, when it is one of {@code policies} (not {@code default}); else "-". */
    String policy = "-";
    int status;
    String upstream = "-";
    /** {@code parent} when the request went through the parent proxy (upstream is then the parent's address). */
    String via = "-";
    String error = "-";
    /** The server name of the tunnel's ClientHello (a validated DNS name), when the SNI check ran. */
    String sni = "-";
    /** The SNI check's result ({@code ok}, {@code no_bytes} or a reason), or "-" when it did not run. */
    String sniCheck = "-";
    long bytesUp;
    long bytesDown;
    /** How a tunnel ended ({@code client_closed}, {@code upstream_reset}, ...), or "-" for anything else. */
    String end = "-";
    /** The Squid format's result code for that end, or null. */
    String squidCode;
    private boolean logged;

    public AccessRecord(String id, SocketAddress client) {
        this(id, client, List.of());
    }

    /** A record for the connection's client: its address and its certificate identities. */
    public static AccessRecord of(String id, ClientIdentity client) {
        return new AccessRecord(id, client.address(), client.certificateIdentities());
    }

    private AccessRecord(String id, SocketAddress client, List<String> identity) {
        this.id = id;
        this.client = AddressText.of(client);
        this.identity = identity;
    }

    /** The authenticated user (a name the users file lists; never an unverified one). */
    public AccessRecord user(String user) {
        this.user = user == null ? "-" : user;
        return this;
    }

    public String user() {
        return user;
    }

    public AccessRecord method(String method) {
        this.method = method;
        return this;
    }

    /** The validated {@code host:port}; never raw client bytes. */
    public AccessRecord target(String authority) {
        this.target = authority;
        return this;
    }

    /** The URL of a forwarded request, without its query (which may carry short-lived grants). */
    public AccessRecord url(String url) {
        this.url = url;
        return this;
    }

    public AccessRecord decision(String decision, String reason, String rule) {
        this.decision = decision;
        this.reason = reason;
        this.rule = rule;
        return this;
    }

    /** The policy whose allowlist decides this request; {@code default} is not written. */
    public AccessRecord policy(String name) {
        this.policy = "default".equals(name) ? "-" : name;
        return this;
    }

    public AccessRecord status(int status) {
        this.status = status;
        return this;
    }

    public AccessRecord upstream(SocketAddress address) {
        if (address instanceof InetSocketAddress isa && isa.getAddress() != null) {
            this.upstream = AddressText.of(isa);
        }
        return this;
    }

    /**
     * Marks the request as sent through the parent proxy ({@code upstream-proxy}): its
     * {@link #upstream} is then the parent's address, not the destination's.
     */
    public AccessRecord viaParent() {
        this.via = "parent";
        return this;
    }

    /** A short code such as {@code upstream_timeout} when the exchange failed after the decision. */
    public AccessRecord error(String error) {
        this.error = error;
        return this;
    }

    /**
     * The SNI check's outcome: {@code serverName} (null: none, or none the parser accepted) and
     * {@code result}, a stable code ({@code ok}, {@code no_bytes} or an SNI reason label).
     */
    public AccessRecord sniCheck(String serverName, String result) {
        this.sni = serverName == null ? "-" : serverName;
        this.sniCheck = result;
        return this;
    }

    /**
     * How the tunnel ended: {@code end}, a stable code, and the Squid format's result code for it
     * ({@code TCP_TUNNEL}, {@code TCP_TUNNEL_ABORTED}, ...). Only tunnels have an end.
     */
    public AccessRecord end(String end, String squidCode) {
        this.end = end;
        this.squidCode = squidCode;
        return this;
    }

    /** Whether the SNI check ran and found a problem (logged at WARN whatever the tunnel did). */
    boolean sniProblem() {
        return !"-".equals(sniCheck) && !"ok".equals(sniCheck) && !"no_bytes".equals(sniCheck);
    }

    /** Whether the SNI check closed the tunnel ({@code enforce}): its error is the check's reason. */
    boolean sniRefused() {
        return sniProblem() && sniCheck.equals(error);
    }

    /** Bytes relayed from the client so far. */
    public long bytesUp() {
        return bytesUp;
    }

    /** Bytes relayed to the client so far. */
    public long bytesDown() {
        return bytesDown;
    }

    public void addBytesUp(long n) {
        bytesUp += n;
    }

    public void addBytesDown(long n) {
        bytesDown += n;
    }

    /** The policy that decided ({@code default} for the top-level allowlist). */
    public String policy() {
        return "-".equals(policy) ? "default" : policy;
    }

    public int status() {
        return status;
    }

    public String id() {
        return id;
    }

    public String client() {
        return client;
    }

    /** Marks the record written; returns false if it already was (so each exchange logs once). */
    boolean markLogged() {
        if (logged) {
            return false;
        }
        logged = true;
        return true;
    }
}
