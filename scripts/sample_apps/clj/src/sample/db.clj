(ns sample.db
  "DATABASE_URL (from the app's env file, APP_ENV_FILE) as a JDBC connection."
  (:import (java.net URI URLDecoder)
           (java.sql DriverManager)
           (java.util Properties)))

(defn- decode [s] (URLDecoder/decode (or s "") "UTF-8"))

(defn jdbc-spec
  "postgresql://user:pass@host:port/db (or a jdbc:postgresql:// URL) ->
  [jdbc-url properties]."
  [url]
  (when (empty? url)
    (throw (ex-info "DATABASE_URL is not set (put it in the app's env file, APP_ENV_FILE)" {})))
  (if (.startsWith ^String url "jdbc:")
    [url (Properties.)]
    (let [uri (URI. url)
          [user pass] (some-> (.getRawUserInfo uri) (.split ":" 2) seq)
          props (doto (Properties.)
                  (.setProperty "user" (decode user))
                  (.setProperty "password" (decode pass))
                  (.setProperty "connectTimeout" "3")
                  (.setProperty "socketTimeout" "30"))]
      [(str "jdbc:postgresql://" (.getHost uri) ":" (if (pos? (.getPort uri)) (.getPort uri) 5432)
            (.getRawPath uri))
       props])))

(defn connect
  "A new connection to DATABASE_URL."
  []
  (let [[url props] (jdbc-spec (System/getenv "DATABASE_URL"))]
    (Class/forName "org.postgresql.Driver")
    (DriverManager/getConnection url props)))
