package dev.egressproxy.check;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.SSLContext;
import tools.jackson.core.JacksonException;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.ObjectReadContext;
import tools.jackson.core.json.JsonFactory;

/**
 * {@code egress-proxy check image}: the requests of a registry pull, through a running proxy, as
 * podman and skopeo make them: the {@code /v2/} ping, the token (anonymous or with the
 * {@code auth.json} credentials), the manifest (and each platform's manifest of a list), then one
 * request per blob, {@code GET} with {@code Range: bytes=0-0}, whose redirect is followed by hand
 * (a request to each host in turn, so each host is seen) and whose body is never read beyond one
 * byte. Every host is recorded with what the proxy said about it.
 */
final class ImageCheck {

    static final List<String> MANIFEST_TYPES = List.of(
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json");
    private static final int MAX_REDIRECTS = 5;
    private static final int MAX_DOCUMENT = 4 * 1024 * 1024;
    // auth-param = token "=" ( token / quoted-string ), RFC 9110 11.2; registries send both forms.
    private static final Pattern PARAM = Pattern.compile("(\\w+)\\s*=\\s*(?:\"((?:[^\"\\\\]|\\\\.)*)\"|([^\\s,\"]+))");
    private static final JsonFactory JSON = new JsonFactory();

    private final ImageRef image;
    private final ProxyAddress proxy;
    private final AuthFile auth;
    private final String platform;
    private final ProxiedHttp http;
    private final Map<String, Host> hosts = new LinkedHashMap<>();
    private final List<ImageResult.Step> steps = new ArrayList<>();
    private String authorization;

    /**
     * @param ssl the trust for the registry, its token service and its CDNs
     * @param proxySsl the trust for the proxy's certificate, used when {@code proxy} is {@code https://}
     */
    ImageCheck(ImageRef image, ProxyAddress proxy, AuthFile auth, SSLContext ssl, SSLContext proxySsl, String platform,
            Duration timeout) {
        this.image = image;
        this.proxy = proxy;
        this.auth = auth;
        this.platform = platform;
        this.http = new ProxiedHttp(proxy, ssl, proxySsl, timeout);
    }

    /** A host as the pull saw it so far. */
    private static final class Host {
        final String authority;
        final Set<String> roles = new LinkedHashSet<>();
        final Set<Integer> statuses = new TreeSet<>();
        ImageResult.ProxyVerdict verdict = ImageResult.ProxyVerdict.ADMITTED;
        String reasonCode;
        String detail;
        int requests;

        Host(String authority) {
            this.authority = authority;
        }

        boolean failed() {
            return verdict != ImageResult.ProxyVerdict.ADMITTED;
        }
    }

    ImageResult run() throws IOException {
        try {
            walk();
        } catch (ProxiedHttp.ProxyFailed e) {
            steps.add(new ImageResult.Step("proxy", false, e.getMessage()));
        }
        List<String> needs = new ArrayList<>();
        List<ImageResult.HostUse> uses = new ArrayList<>();
        for (Host h : hosts.values()) {
            uses.add(new ImageResult.HostUse(h.authority, List.copyOf(h.roles), h.verdict, h.reasonCode,
                    List.copyOf(h.statuses), h.requests, h.detail));
            switch (h.verdict) {
                case DENIED -> needs.add("pull needs " + h.authority + ", " + deniedText(h));
                case UNREACHABLE -> needs.add("pull needs " + h.authority + ", which the proxy could not reach: " + h.detail);
                case FAILED -> needs.add("pull needs " + h.authority + ", which failed: " + h.detail);
                default -> {
                }
            }
        }
        boolean works = needs.isEmpty() && steps.stream().allMatch(ImageResult.Step::ok);
        return new ImageResult(image.toString(), proxy.toString(), works, needs, uses, steps);
    }

    private static String deniedText(Host h) {
        if ("host_not_allowlisted".equals(h.reasonCode) || "port_not_allowed".equals(h.reasonCode)) {
            return "not in the allowlist";
        }
        if ("address_not_allowed".equals(h.reasonCode)) {
            return "which resolves to an address the egress policy does not allow";
        }
        return "refused by the proxy: " + h.detail;
    }

    private void walk() throws IOException {
        URI base = URI.create("https://" + image.registry() + "/v2/");
        ProxiedHttp.Response ping = request("registry", "GET", base, Map.of(), 64 * 1024);
        if (ping == null) {
            steps.add(new ImageResult.Step("/v2/ ping", false, "registry not reached"));
            return;
        }
        if (ping.status() == 401) {
            if (!authenticate(ping)) {
                return;
            }
        } else if (ping.status() != 200) {
            steps.add(new ImageResult.Step("/v2/ ping", false, image.registry() + " answered " + ping.status() + " " + ping.reason()));
            return;
        } else {
            steps.add(new ImageResult.Step("/v2/ ping", true, "200, no authentication"));
        }
        Manifest top = manifest(image.reference(), "manifest " + image.reference());
        if (top == null) {
            return;
        }
        List<String> blobs = new ArrayList<>();
        if (top.isList()) {
            List<Manifest.Platform> chosen = top.platforms().stream()
                    .filter(p -> platform == null ? !p.os().equals("unknown") : p.name().equals(platform)
                            || (p.os() + "/" + p.arch()).equals(platform))
                    .toList();
            if (chosen.isEmpty()) {
                steps.add(new ImageResult.Step("platforms", false, "the list has no manifest for "
                        + (platform == null ? "any platform" : platform) + "; it has "
                        + top.platforms().stream().map(Manifest.Platform::name).toList()));
                return;
            }
            steps.set(steps.size() - 1, new ImageResult.Step(steps.get(steps.size() - 1).what(), true,
                    "a list of " + top.platforms().size() + "; checking " + chosen.stream().map(Manifest.Platform::name).toList()));
            for (Manifest.Platform p : chosen) {
                Manifest m = manifest(p.digest(), "manifest " + p.name());
                if (m == null) {
                    return;
                }
                blobs.addAll(m.blobs());
            }
        } else {
            blobs.addAll(top.blobs());
        }
        for (String digest : new LinkedHashSet<>(blobs)) {
            blob(digest);
        }
    }

    /**
     * Follows the {@code WWW-Authenticate} challenge of the ping: a Bearer token from its realm
     * (anonymous, or with the auth file's login as Basic credentials and {@code account}, as
     * containers/image asks), or the login itself for a Basic challenge. A ping that offers both
     * is answered with the token, as podman does.
     */
    private boolean authenticate(ProxiedHttp.Response ping) throws IOException {
        List<String> challenges = ping.headers("www-authenticate");
        AuthFile.Login login = auth.login(image.registry(), image.repository());
        if (challenges.isEmpty()) {
            steps.add(new ImageResult.Step("/v2/ ping", false, "401 without WWW-Authenticate"));
            return false;
        }
        String bearer = challenges.stream().filter(c -> scheme(c, "Bearer")).findFirst().orElse(null);
        if (bearer == null && challenges.stream().anyMatch(c -> scheme(c, "Basic"))) {
            if (login == null) {
                steps.add(new ImageResult.Step("/v2/ ping", false, "401: the registry wants credentials (Basic) and "
                        + (auth == AuthFile.none() ? "no --authfile was given" : "the auth file has none for " + image.registry())));
                return false;
            }
            authorization = login.basic();
            steps.add(new ImageResult.Step("/v2/ ping", true, "401, Basic credentials of " + login.user() + " from the auth file"));
            return true;
        }
        if (bearer == null) {
            steps.add(new ImageResult.Step("/v2/ ping", false, "unsupported challenge: " + String.join(", ", challenges)));
            return false;
        }
        Map<String, String> params = new LinkedHashMap<>();
        Matcher m = PARAM.matcher(bearer.substring("Bearer".length()));
        while (m.find()) {
            params.putIfAbsent(m.group(1).toLowerCase(Locale.ROOT),
                    m.group(2) != null ? m.group(2).replaceAll("\\\\(.)", "$1") : m.group(3));
        }
        String realm = params.get("realm");
        URI realmUri;
        try {
            realmUri = realm == null ? null : URI.create(realm);
        } catch (IllegalArgumentException e) {
            realmUri = null;
        }
        if (realmUri == null || realmUri.getHost() == null
                || !("https".equalsIgnoreCase(realmUri.getScheme()) || "http".equalsIgnoreCase(realmUri.getScheme()))) {
            steps.add(new ImageResult.Step("/v2/ ping", false, "the Bearer challenge names no http(s) realm: " + bearer));
            return false;
        }
        steps.add(new ImageResult.Step("/v2/ ping", true, "401, token from " + realmUri.getHost()));
        StringBuilder url = new StringBuilder(realm).append(realm.contains("?") ? "&" : "?");
        if (params.containsKey("service")) {
            url.append("service=").append(URLEncoder.encode(params.get("service"), StandardCharsets.UTF_8)).append('&');
        }
        if (login != null) {
            url.append("account=").append(URLEncoder.encode(login.user(), StandardCharsets.UTF_8)).append('&');
        }
        url.append("scope=").append(URLEncoder.encode("repository:" + image.repository() + ":pull", StandardCharsets.UTF_8));
        Map<String, String> headers = login == null ? Map.of() : Map.of("Authorization", login.basic());
        ProxiedHttp.Response r = request("auth", "GET", URI.create(url.toString()), headers, 1024 * 1024);
        if (r == null) {
            steps.add(new ImageResult.Step("token", false, "token service " + authority(realmUri) + " not reached"));
            return false;
        }
        if (r.status() != 200) {
            steps.add(new ImageResult.Step("token", false, realmUri.getHost() + " answered " + r.status() + " " + r.reason()
                    + (login == null ? " (anonymous; pass --authfile if the registry needs a login)"
                            : " (with the credentials of " + login.user() + " from the auth file)")));
            return false;
        }
        String token = tokenOf(r.body());
        if (token == null) {
            steps.add(new ImageResult.Step("token", false, "the token answer has no token"));
            return false;
        }
        authorization = "Bearer " + token;
        steps.add(new ImageResult.Step("token", true, login == null ? "anonymous" : "with the credentials of " + login.user()
                + " from the auth file"));
        return true;
    }

    private static boolean scheme(String challenge, String scheme) {
        String c = challenge.trim();
        return c.regionMatches(true, 0, scheme, 0, scheme.length())
                && (c.length() == scheme.length() || Character.isWhitespace(c.charAt(scheme.length())));
    }

    private Manifest manifest(String reference, String what) throws IOException {
        URI uri = URI.create("https://" + image.registry() + "/v2/" + image.repository() + "/manifests/" + reference);
        Map<String, String> headers = new LinkedHashMap<>();
        headers.put("Accept", String.join(", ", MANIFEST_TYPES));
        if (authorization != null) {
            headers.put("Authorization", authorization);
        }
        ProxiedHttp.Response r = request("registry", "GET", uri, headers, MAX_DOCUMENT);
        if (r == null) {
            steps.add(new ImageResult.Step(what, false, "registry not reached"));
            return null;
        }
        if (r.status() != 200) {
            steps.add(new ImageResult.Step(what, false, image.registry() + " answered " + r.status() + " " + r.reason()));
            return null;
        }
        Manifest m;
        try {
            m = Manifest.parse(r.body(), r.header("content-type"));
        } catch (JacksonException | IllegalArgumentException e) {
            steps.add(new ImageResult.Step(what, false, "not a manifest: " + e.getMessage()));
            return null;
        }
        steps.add(new ImageResult.Step(what, true, m.isList() ? "a list" : "config + " + (m.blobs().size() - 1) + " layers"));
        return m;
    }

    /** One blob: the registry's answer, then each redirect by hand, never more than a byte of the body. */
    private void blob(String digest) throws IOException {
        URI uri = URI.create("https://" + image.registry() + "/v2/" + image.repository() + "/blobs/" + digest);
        List<String> path = new ArrayList<>();
        for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
            String authority = authority(uri);
            path.add(authority);
            Host known = hosts.get(authority);
            if (known != null && known.failed()) {
                // Asked once already: a second 504 would only cost another connect timeout.
                known.roles.add(hop == 0 ? "registry" : "blob");
                steps.add(new ImageResult.Step("blob " + shortDigest(digest), false, String.join(" -> ", path)
                        + ": " + authority + " already failed"));
                return;
            }
            Map<String, String> headers = new LinkedHashMap<>();
            headers.put("Range", "bytes=0-0");
            // Credentials go to the registry only, never to the CDN it redirects to (as clients do).
            if (authorization != null && authority.equals(authority(URI.create("https://" + image.registry())))) {
                headers.put("Authorization", authorization);
            }
            ProxiedHttp.Response r = request(hop == 0 ? "registry" : "blob", "GET", uri, headers, 1);
            if (r == null) {
                steps.add(new ImageResult.Step("blob " + shortDigest(digest), false, String.join(" -> ", path)
                        + ": " + hosts.get(authority).detail));
                return;
            }
            if (r.status() / 100 == 3 && r.header("location") != null) {
                uri = uri.resolve(r.header("location"));
                continue;
            }
            boolean ok = r.status() == 200 || r.status() == 206;
            steps.add(new ImageResult.Step("blob " + shortDigest(digest), ok, String.join(" -> ", path) + ": " + r.status()));
            if (!ok) {
                Host h = hosts.get(authority);
                h.verdict = ImageResult.ProxyVerdict.FAILED;
                h.detail = "answered " + r.status() + " " + r.reason() + " for blob " + shortDigest(digest);
            }
            return;
        }
        steps.add(new ImageResult.Step("blob " + shortDigest(digest), false, "more than " + MAX_REDIRECTS + " redirects: " + path));
    }

    /**
     * One request, recorded under its host. Returns null when the proxy refused or could not reach
     * the host (or TLS with it failed), after recording why.
     */
    private ProxiedHttp.Response request(String role, String method, URI uri, Map<String, String> headers, int maxBody)
            throws IOException {
        String authority = authority(uri);
        Host h = hosts.computeIfAbsent(authority, Host::new);
        h.roles.add(role);
        h.requests++;
        ProxiedHttp.Response r;
        try {
            r = http.send(method, uri, headers, maxBody);
        } catch (ProxiedHttp.ProxyFailed e) {
            // Not the host's doing: the proxy is named in the "proxy" step instead.
            if (--h.requests == 0) {
                hosts.remove(authority);
            }
            throw e;
        } catch (ProxiedHttp.TlsFailed e) {
            h.verdict = ImageResult.ProxyVerdict.FAILED;
            h.detail = "TLS: " + e.getMessage();
            return null;
        } catch (IOException e) {
            h.verdict = ImageResult.ProxyVerdict.FAILED;
            h.detail = e.getMessage();
            return null;
        }
        if (r.fromProxy()) {
            h.reasonCode = r.header(ProxiedHttp.REASON_HEADER);
            h.detail = r.status() + " " + r.reason() + (h.reasonCode == null ? "" : " (" + h.reasonCode + ")");
            h.verdict = r.status() == 403 ? ImageResult.ProxyVerdict.DENIED
                    : r.status() == 502 || r.status() == 504 ? ImageResult.ProxyVerdict.UNREACHABLE
                    : ImageResult.ProxyVerdict.FAILED;
            return null;
        }
        h.statuses.add(r.status());
        return r;
    }

    private static String authority(URI uri) {
        int port = uri.getPort() > 0 ? uri.getPort() : "https".equalsIgnoreCase(uri.getScheme()) ? 443 : 80;
        return uri.getHost().toLowerCase(Locale.ROOT) + ":" + port;
    }

    static String shortDigest(String digest) {
        int colon = digest.indexOf(':');
        return digest.length() > colon + 13 ? digest.substring(0, colon + 13) : digest;
    }

    private static String tokenOf(byte[] body) {
        String token = null;
        try (JsonParser p = JSON.createParser(ObjectReadContext.empty(), body)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                String name = p.currentName();
                p.nextToken();
                if ((name.equals("token") || (name.equals("access_token") && token == null))
                        && p.currentToken() == JsonToken.VALUE_STRING) {
                    token = p.getString();
                } else {
                    p.skipChildren();
                }
            }
        } catch (JacksonException e) {
            return null;
        }
        return token;
    }

    /** A manifest or a list of them, as far as the check needs it. */
    record Manifest(boolean isList, List<Platform> platforms, List<String> blobs) {

        record Platform(String os, String arch, String variant, String digest) {
            String name() {
                return os + "/" + arch + (variant == null ? "" : "/" + variant);
            }
        }

        static Manifest parse(byte[] body, String contentType) {
            String mediaType = contentType == null ? null : contentType.split(";")[0].trim();
            List<Platform> platforms = new ArrayList<>();
            List<String> blobs = new ArrayList<>();
            boolean hasManifests = false;
            try (JsonParser p = JSON.createParser(ObjectReadContext.empty(), body)) {
                if (p.nextToken() != JsonToken.START_OBJECT) {
                    throw new IllegalArgumentException("not a JSON object");
                }
                while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                    String name = p.currentName();
                    JsonToken t = p.nextToken();
                    switch (name) {
                        case "mediaType" -> mediaType = t == JsonToken.VALUE_STRING ? p.getString() : mediaType;
                        case "config" -> {
                            String d = descriptorDigest(p, null);
                            if (d != null) {
                                blobs.add(0, d);
                            }
                        }
                        case "layers", "manifests" -> {
                            if (t != JsonToken.START_ARRAY) {
                                p.skipChildren();
                                break;
                            }
                            hasManifests |= name.equals("manifests");
                            while (p.nextToken() == JsonToken.START_OBJECT) {
                                String[] platform = new String[3];
                                String d = descriptorDigest(p, platform);
                                if (d == null) {
                                    continue;
                                }
                                if (name.equals("layers")) {
                                    blobs.add(d);
                                } else {
                                    platforms.add(new Platform(platform[0] == null ? "unknown" : platform[0],
                                            platform[1] == null ? "unknown" : platform[1], platform[2], d));
                                }
                            }
                        }
                        default -> p.skipChildren();
                    }
                }
            }
            boolean list = hasManifests || (mediaType != null && (mediaType.contains("index") || mediaType.contains("list")));
            if (!list && blobs.isEmpty()) {
                throw new IllegalArgumentException("no config or layers (media type " + mediaType + ")");
            }
            return new Manifest(list, platforms, blobs);
        }

        /** Reads a descriptor object (the parser on its START_OBJECT); fills os, architecture, variant. */
        private static String descriptorDigest(JsonParser p, String[] platform) {
            if (p.currentToken() != JsonToken.START_OBJECT) {
                p.skipChildren();
                return null;
            }
            String digest = null;
            while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                String name = p.currentName();
                JsonToken t = p.nextToken();
                if (name.equals("digest") && t == JsonToken.VALUE_STRING) {
                    digest = p.getString();
                } else if (name.equals("platform") && t == JsonToken.START_OBJECT && platform != null) {
                    while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                        String key = p.currentName();
                        JsonToken v = p.nextToken();
                        int i = key.equals("os") ? 0 : key.equals("architecture") ? 1 : key.equals("variant") ? 2 : -1;
                        if (i >= 0 && v == JsonToken.VALUE_STRING) {
                            platform[i] = p.getString();
                        } else {
                            p.skipChildren();
                        }
                    }
                } else {
                    p.skipChildren();
                }
            }
            return digest;
        }
    }
}
