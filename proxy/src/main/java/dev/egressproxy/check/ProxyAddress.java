package dev.egressproxy.check;

import dev.egressproxy.policy.AddressText;
import dev.egressproxy.util.BasicCredentials;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.Locale;

/**
 * The proxy a check goes through, as in {@code HTTPS_PROXY}: {@code http://host:port} (the scheme
 * is optional), or {@code https://host:port} for a proxy port that speaks TLS ({@code listen.tls});
 * with {@code user:password@} for a proxy that wants HTTP Basic credentials ({@code auth.basic}),
 * percent-encoded as in a URL ({@code p%40ss} for {@code p@ss}). Without a port: 80 for
 * {@code http}, 443 for {@code https}, as Go clients read the variable.
 *
 * @param user the user name, or null when the URL names none
 * @param password the password (empty when the URL has {@code user@} only), or null
 */
record ProxyAddress(boolean tls, String host, int port, String user, String password) {

    static ProxyAddress parse(String text) {
        String s = text.trim();
        URI uri;
        try {
            uri = URI.create(s.contains("://") ? s : "http://" + s);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("proxy '" + redact(text) + "' is not a URL such as http://127.0.0.1:3128");
        }
        String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
        if (!scheme.equals("http") && !scheme.equals("https")) {
            throw new IllegalArgumentException("proxy '" + redact(text) + "' is not an http:// or https:// URL such as http://127.0.0.1:3128");
        }
        if (uri.getHost() == null) {
            throw new IllegalArgumentException("proxy '" + redact(text) + "' names no host; write it as http://host:port"
                    + (uri.getRawAuthority() != null && uri.getRawAuthority().indexOf('@') != uri.getRawAuthority().lastIndexOf('@')
                            ? " (percent-encode an @ in the user name or password as %40)" : ""));
        }
        String user = null;
        String password = null;
        String info = uri.getRawUserInfo();
        if (info != null) {
            int colon = info.indexOf(':');
            try {
                user = decode(colon >= 0 ? info.substring(0, colon) : info);
                password = colon >= 0 ? decode(info.substring(colon + 1)) : "";
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("proxy '" + redact(text) + "': the user name or password is not percent-encoded: "
                        + e.getMessage());
            }
        }
        boolean tls = scheme.equals("https");
        return new ProxyAddress(tls, uri.getHost().replaceAll("^\\[|\\]$", ""), uri.getPort() > 0 ? uri.getPort() : tls ? 443 : 80,
                user, password);
    }

    private static String decode(String s) {
        // URLDecoder would read '+' as a space, which a URL's user info does not.
        return URLDecoder.decode(s.replace("+", "%2B"), StandardCharsets.UTF_8);
    }

    /** {@code text} with the password of its user info, if any, replaced by {@code ***}. */
    private static String redact(String text) {
        return text.replaceFirst("(://[^/@:]*:)[^/@]*@", "$1***@");
    }

    /** The {@code Proxy-Authorization} value, or null without a user. */
    String proxyAuthorization() {
        return user == null ? null : BasicCredentials.header(user, password);
    }

    /** The proxy as {@code host:port}, without scheme or credentials. */
    String authority() {
        return AddressText.withPort(host, port);
    }

    /** The URL with the password replaced by {@code ***}: what the reports print. */
    @Override
    public String toString() {
        return (tls ? "https://" : "http://") + (user == null ? "" : user + (password.isEmpty() ? "" : ":***") + "@") + authority();
    }
}
