package dev.egressproxy.log;

import dev.egressproxy.policy.AddressText;
import java.net.InetSocketAddress;
import java.net.SocketAddress;

/**
 * What one request or tunnel did, filled in as it goes and written as one access-log line when it
 * ends. Only touched from its connection's event loop.
 */
public final class AccessRecord {

    final long startMillis = System.currentTimeMillis();
    final long startNanos = System.nanoTime();
    final String id;
    final String client;
    String method = "-";
    String target = "-";
    String url = "-";
    String decision = "-";
    String reason = "-";
    String rule = "-";
    int status;
    String upstream = "-";
    String error = "-";
    long bytesUp;
    long bytesDown;
    private boolean logged;

    public AccessRecord(String id, SocketAddress client) {
        this.id = id;
        this.client = AddressText.of(client);
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

    /** A short code such as {@code upstream_timeout} when the exchange failed after the decision. */
    public AccessRecord error(String error) {
        this.error = error;
        return this;
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
