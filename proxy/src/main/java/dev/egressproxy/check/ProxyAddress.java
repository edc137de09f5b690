package dev.egressproxy.check;

import java.net.URI;

/** The proxy a check goes through: {@code http://host:port} as in {@code HTTPS_PROXY} (scheme optional). */
record ProxyAddress(String host, int port) {

    static ProxyAddress parse(String text) {
        String s = text.trim();
        URI uri;
        try {
            uri = URI.create(s.contains("://") ? s : "http://" + s);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("proxy '" + text + "' is not a URL such as http://127.0.0.1:3128");
        }
        if (!"http".equalsIgnoreCase(uri.getScheme()) || uri.getHost() == null) {
            throw new IllegalArgumentException("proxy '" + text + "' is not an http:// URL such as http://127.0.0.1:3128");
        }
        return new ProxyAddress(uri.getHost().replaceAll("^\\[|\\]$", ""), uri.getPort() > 0 ? uri.getPort() : 80);
    }

    @Override
    public String toString() {
        return "http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
    }
}
