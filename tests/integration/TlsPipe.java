// TlsPipe: a TLS client on Java's own TLS stack (JSSE, as Android clients
// use), for tests/integration/test_tls_peers.py. It connects to host:port
// with TLS 1.3 (any certificate accepted: the tests' server is self-signed),
// copies stdin lines to the connection and the connection to stdout, byte for
// byte (ISO-8859-1 in and out). A line "^rekey^" is not sent: it makes JSSE
// send a KeyUpdate asking the server for one too (startHandshake() on an
// established TLS 1.3 socket, Java 11 and later). "- Handshake was completed"
// and "- Rekey was completed" go to stderr, as gnutls-cli says them.
import java.io.*;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.cert.X509Certificate;
import javax.net.ssl.*;

public class TlsPipe {
    public static void main(String[] args) throws Exception {
        TrustManager[] trustAll = {new X509TrustManager() {
            public void checkClientTrusted(X509Certificate[] c, String a) {}
            public void checkServerTrusted(X509Certificate[] c, String a) {}
            public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
        }};
        SSLContext ctx = SSLContext.getInstance("TLSv1.3");
        ctx.init(null, trustAll, null);
        SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(args[0], Integer.parseInt(args[1]));
        s.setEnabledProtocols(new String[] {"TLSv1.3"});
        if (args.length > 2)
            s.setEnabledCipherSuites(new String[] {args[2]});
        s.startHandshake();
        System.err.println("- Handshake was completed: " + s.getSession().getProtocol() + " "
                           + s.getSession().getCipherSuite());
        InputStream in = s.getInputStream();
        OutputStream out = s.getOutputStream();
        Thread reader = new Thread(() -> {
            byte[] buf = new byte[65536];
            try {
                int n;
                while ((n = in.read(buf)) > 0) {
                    System.out.write(buf, 0, n);
                    System.out.flush();
                }
            } catch (IOException e) {
                System.err.println("- read ended: " + e);
            }
            System.err.println("- Peer has closed the connection");
            System.exit(0);
        });
        reader.start();
        BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.ISO_8859_1));
        String line;
        while ((line = stdin.readLine()) != null) {
            if (line.equals("^rekey^")) {
                s.startHandshake();
                System.err.println("- Rekey was completed");
                continue;
            }
            out.write((line + "\n").getBytes(StandardCharsets.ISO_8859_1));
            out.flush();
        }
        reader.join(10000);
        s.close();
    }
}
