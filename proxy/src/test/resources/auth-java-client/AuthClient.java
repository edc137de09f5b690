// A Java client for ProxyAuthIT: GETs each URL through an HTTP proxy with java.net.http.HttpClient,
// answering the proxy's 407 through an Authenticator, trusting only the given CA certificate.
// Prints "STATUS URL BODY" per URL; exits 1 on any error. Run as a source file:
//
//   java -Djdk.http.auth.tunneling.disabledSchemes= AuthClient.java HOST PORT USER PASSWORD CA_PEM URL...
//
// The JDK refuses Basic for HTTPS tunnels (CONNECT) unless jdk.http.auth.tunneling.disabledSchemes
// leaves Basic out; its default is "Basic".
import java.io.InputStream;
import java.net.Authenticator;
import java.net.InetSocketAddress;
import java.net.PasswordAuthentication;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class AuthClient {
    public static void main(String[] args) throws Exception {
        String user = args[2];
        char[] password = args[3].toCharArray();
        Certificate ca;
        try (InputStream in = Files.newInputStream(Path.of(args[4]))) {
            ca = CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        trust.setCertificateEntry("ca", ca);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext tls = SSLContext.getInstance("TLS");
        tls.init(null, tmf.getTrustManagers(), null);
        HttpClient client = HttpClient.newBuilder()
                .proxy(ProxySelector.of(new InetSocketAddress(args[0], Integer.parseInt(args[1]))))
                .authenticator(new Authenticator() {
                    @Override
                    protected PasswordAuthentication getPasswordAuthentication() {
                        return getRequestorType() == RequestorType.PROXY ? new PasswordAuthentication(user, password) : null;
                    }
                })
                .sslContext(tls)
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10))
                .build();
        for (int i = 5; i < args.length; i++) {
            HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(args[i]))
                    .timeout(Duration.ofSeconds(20)).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println(r.statusCode() + " " + args[i] + " " + r.body().trim());
        }
    }
}
